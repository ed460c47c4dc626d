#!/bin/sh
# Everyday tools as a shell script uses them, one tool per run (the first
# argument), printing only what does not depend on where or when it runs, so
# that the output inside a picoprocess can be compared with the output
# natively.  Works in a fresh directory under $TMPDIR, which the caller
# removes (natively a temporary directory, inside the run's scratch).
set -eu
work=$(mktemp -d "${TMPDIR:-/tmp}/toolcheck.XXXXXX")
cd "$work"

case "$1" in
make)
	cat > Makefile <<'MK'
SRCS := $(wildcard *.in)
OUTS := $(SRCS:.in=.out)
all: $(OUTS) summary
%.out: %.in
	tr a-z A-Z < $< > $@
summary: $(OUTS)
	@echo "built $(sort $^)"
	@cat $^
	@echo "shell: $(shell echo $$((2 + 3)))"
.PHONY: all summary clean
clean:
	rm -f *.out
MK
	printf 'alpha\n' > a.in
	printf 'beta\n' > b.in
	make -j2 --no-print-directory 2>&1 | sort
	echo "again: $(make --no-print-directory -q a.out b.out && echo up-to-date)"
	make --no-print-directory clean
	ls
	;;
ps)
	sleep 30 &
	s1=$!
	sleep 31 &
	s2=$!
	# Until both children have exec'd sleep (a forked child is "sh" before).
	tries=0
	while [ "$(pgrep -P $$ -x sleep | wc -l)" -ne 2 ]; do
		tries=$((tries + 1))
		[ "$tries" -le 1000 ] || { echo "the sleeps never started" >&2; exit 1; }
		sleep 0.01
	done
	echo "children: $(ps -o comm= --ppid $$ | sort | tr '\n' ' ')"
	echo "self: $(ps -o comm= -p $$) $(test "$(ps -o pid= -p $$ | tr -d ' ')" = "$$" && echo same-pid)"
	echo "pgrep: $(pgrep -P $$ -x sleep | wc -l)"
	# SIGPIPE: the one signal (with SIGINT, which background jobs ignore) whose
	# deaths the shell does not report on stderr at a moment of its choosing.
	pkill -PIPE -P $$ -x sleep
	wait $s1 || echo "sleep 1 ended by signal $(( $? - 128 ))"
	wait $s2 || echo "sleep 2 ended by signal $(( $? - 128 ))"
	echo "after: $(pgrep -P $$ -x sleep | wc -l)"
	;;
top)
	top -b -n 1 -p $$ > top.txt
	echo "header: $(head -1 top.txt | cut -c1-5)"
	echo "tasks line: $(grep -c '^Tasks:' top.txt)"
	awk -v pid=$$ '$1 == pid { print "self:", $NF }' top.txt
	;;
find)
	mkdir -p a/b/c
	touch a/x.txt a/b/y.txt a/b/c/z.log
	find a -type f -name '*.txt' -exec sh -c 'echo "txt $1"' _ {} \; | sort
	find a -type f -exec ls {} + | sort | tr '\n' ' '
	echo
	find a -depth -type d -print | tr '\n' ' '
	echo
	find a -name '*.log' -exec rm {} \; -print
	find a -type f | wc -l
	;;
xargs)
	printf '1\n2\n3\n4\n' | xargs -n1 expr 10 +
	printf 'a b\nc\n' | xargs -n2 echo pair
	printf '%s\0' one two three | xargs -0 -P2 -I{} sh -c 'echo "{}" > "{}.f"'
	ls *.f | tr '\n' ' '
	echo
	seq 1 100 | xargs sh -c 'echo $#' _ | tr '\n' ' '
	echo
	;;
git)
	export GIT_AUTHOR_NAME=picoproc GIT_AUTHOR_EMAIL=p@example.org GIT_COMMITTER_NAME=picoproc
	export GIT_COMMITTER_EMAIL=p@example.org GIT_AUTHOR_DATE='2024-01-01T00:00:00Z'
	export GIT_COMMITTER_DATE='2024-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME="$work"
	git init -q -b main repo
	cd repo
	printf 'one\n' > f.txt
	git add f.txt
	git commit -q -m first
	printf 'two\n' >> f.txt
	mkdir d && printf 'x\n' > d/g.txt
	git add -A
	git commit -q -m second
	git log --format='%H %s'
	git checkout -q -b side HEAD~1
	printf 'side\n' > s.txt && git add s.txt && git commit -q -m side
	git checkout -q main
	git merge -q --no-edit side
	git log --format=%s | tr '\n' ' '
	echo
	git status --short | wc -l
	git gc -q
	git fsck --no-progress 2>&1 | wc -l
	git ls-files
	git diff HEAD~2 --stat | tail -1
	;;
tar)
	mkdir -p src/sub
	printf 'alpha\n' > src/a.txt
	printf 'beta\n' > src/sub/b.txt
	ln -s a.txt src/link
	tar cf plain.tar src
	tar czf packed.tgz src
	tar tf plain.tar | sort | tr '\n' ' '
	echo
	mkdir out1 out2
	tar xf plain.tar -C out1
	tar xzf packed.tgz -C out2
	diff -r src out1/src && diff -r src out2/src && echo "round trips equal"
	readlink out2/src/link
	tar cf - src | tar tvf - | awk '{print $1, $NF}' | sort
	;;
*)
	echo "usage: $0 make|ps|top|find|xargs|git|tar" >&2
	exit 2
	;;
esac
