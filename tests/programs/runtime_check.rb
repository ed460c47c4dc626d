# What a Ruby program does every day, printed in a fixed order so that its
# output inside a picoprocess can be compared with its output natively:
# threads, a queue, backticks and system, files, fork, a TCP server on
# loopback.  Any warning Ruby prints goes to stderr, which must stay empty.
require 'socket'
require 'tmpdir'
require 'fileutils'

results = Queue.new
threads = (1..8).map do |t|
  Thread.new(t) do |k|
    s = 0
    200_000.times { |i| s += (i * k) % 9 }
    results << s
  end
end
threads.each(&:join)
sum = 0
sum += results.pop until results.empty?
puts "threads #{sum}"
m = Mutex.new
count = 0
(1..4).map { Thread.new { 10_000.times { m.synchronize { count += 1 } } } }.each(&:join)
puts "mutex #{count}"

puts "backticks #{`echo $((6 * 7))`.strip} #{$?.exitstatus}"
puts "system #{system('exit 3')} #{$?.exitstatus}"
IO.popen(['/bin/sh', '-c', 'read x; echo got $x'], 'r+') do |io|
  io.puts 'line'
  io.close_write
  puts "popen #{io.read.strip}"
end

pid = fork { exit!(7) }
Process.wait(pid)
puts "fork #{$?.exitstatus}"

Dir.mktmpdir('rubycheck') do |dir|
  File.write(File.join(dir, 'b.txt'), "bee\n")
  FileUtils.mkdir_p(File.join(dir, 'sub', 'deeper'))
  FileUtils.mv(File.join(dir, 'b.txt'), File.join(dir, 'sub'))
  File.open(File.join(dir, 'a.txt'), 'w') { |f| f.write('ay') }
  puts "files #{Dir.glob('**/*', base: dir).sort.join(',')} #{File.read(File.join(dir, 'sub', 'b.txt')).strip}"
end

server = TCPServer.new('127.0.0.1', 0)
port = server.addr[1]
t = Thread.new do
  c = server.accept
  c.write("hello #{c.gets.strip}")
  c.close
end
s = TCPSocket.new('127.0.0.1', port)
s.puts 'ruby'
puts "tcp #{s.read}"
s.close
t.join
server.close

reader, writer = IO.pipe
trap('USR1') { writer.write('usr1') }
Process.kill('USR1', Process.pid)
puts "signal #{reader.read(4)}"
sleep 0.01
puts "done"
