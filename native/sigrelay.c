#include "sigrelay.h"

#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>

int pico_signalfd(const int *signos, int n) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < n; i++) {
        if (sigaddset(&mask, signos[i]) < 0)
            return -EINVAL;
    }
    int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}
