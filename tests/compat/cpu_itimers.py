"""setitimer's CPU-time timers: they fire after CPU time, not while idle."""
import signal, time, os, ctypes, resource
got = []
signal.signal(signal.SIGVTALRM, lambda s, f: got.append(s))
signal.signal(signal.SIGPROF, lambda s, f: got.append(s))
signal.setitimer(signal.ITIMER_VIRTUAL, 0.05, 0.05)
t0 = time.process_time()
while len(got) < 3 and time.process_time() - t0 < 5: pass
v = signal.setitimer(signal.ITIMER_VIRTUAL, 0)
print("virtual", got[:3], v[1])
got.clear()
signal.setitimer(signal.ITIMER_PROF, 0.05, 0.05)
t0 = time.process_time()
while len(got) < 3 and time.process_time() - t0 < 5: pass
print("prof", got[:3], signal.getitimer(signal.ITIMER_PROF)[1])
signal.setitimer(signal.ITIMER_PROF, 0)
print("after", signal.getitimer(signal.ITIMER_PROF))
# idle process: the virtual timer does not fire while sleeping
signal.setitimer(signal.ITIMER_VIRTUAL, 0.2)
time.sleep(0.3)
print("idle", got.count(signal.SIGVTALRM), signal.getitimer(signal.ITIMER_VIRTUAL)[0] > 0.1)
signal.setitimer(signal.ITIMER_VIRTUAL, 0)
