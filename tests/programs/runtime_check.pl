# What a Perl program does every day, printed in a fixed order so that its
# output inside a picoprocess can be compared with its output natively:
# fork and wait, pipes from commands, system and backticks, files, sort,
# regular expressions, a signal handler, a TCP server on loopback.
use strict;
use warnings;
use File::Temp qw(tempdir);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);

$| = 1;
my @kids;
for my $k (1 .. 4) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) { exit($k * 2) }
    push @kids, $pid;
}
my @codes = map { waitpid($_, 0); $? >> 8 } @kids;
print "fork @codes\n";

open(my $fh, '-|', '/bin/sh', '-c', 'printf "c\nb\na\n"') or die "open: $!";
my @lines = sort <$fh>;
close $fh;
chomp @lines;
print "pipe @lines\n";
my $out = `echo \$((6 * 7))`;
chomp $out;
print "backticks $out ", $? >> 8, "\n";
system('/bin/sh', '-c', 'exit 3');
print "system ", $? >> 8, "\n";

my $dir = tempdir('perlcheck-XXXXXX', TMPDIR => 1, CLEANUP => 1);
make_path("$dir/sub/deeper");
open(my $w, '>', "$dir/sub/b.txt") or die; print $w "bee\nbuzz\n"; close $w;
rename("$dir/sub/b.txt", "$dir/b.txt") or die "rename: $!";
opendir(my $dh, $dir) or die; my @names = sort grep { !/^\./ } readdir($dh); closedir $dh;
open(my $r, '<', "$dir/b.txt") or die; my @got = <$r>; close $r;
print "files @names ", scalar(@got), " ", (-s "$dir/b.txt"), "\n";
remove_tree("$dir/sub");
print "removed ", (-e "$dir/sub" ? "no" : "yes"), "\n";

my %count;
$count{$_}++ for map { lc } ("The quick brown fox jumps over the lazy dog the end" =~ /(\w+)/g);
print "words ", join(",", map { "$_=$count{$_}" } sort keys %count), "\n";

my $got = '';
local $SIG{USR1} = sub { $got = 'usr1' };
kill 'USR1', $$;
print "signal $got\n";

my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1)
    or die "listen: $!";
my $port = $server->sockport;
my $pid = fork();
if ($pid == 0) {
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or exit 1;
    print $c "perl\n";
    my $answer = <$c>;
    print "tcp $answer\n";
    exit 0;
}
my $conn = $server->accept;
my $line = <$conn>;
chomp $line;
print $conn "hello $line";
close $conn;
waitpid($pid, 0);
print "client ", $? >> 8, "\n";
