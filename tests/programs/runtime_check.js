// What a Node.js program does every day, printed in a fixed order so that
// its output inside a picoprocess can be compared with its output natively:
// fs, child_process, http on loopback, worker threads, timers.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const cp = require('child_process');
const { Worker } = require('worker_threads');

function work(n) {
  let s = 0;
  for (let i = 0; i < n; i++) s += (i * 7) % 13;
  return s;
}

async function main() {
  // fs: sync and promise APIs in the scratch directory
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodecheck-'));
  fs.writeFileSync(path.join(dir, 'b.txt'), 'bee');
  await fs.promises.writeFile(path.join(dir, 'a.txt'), 'ay');
  fs.mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true });
  fs.renameSync(path.join(dir, 'b.txt'), path.join(dir, 'sub', 'b.txt'));
  const listing = fs.readdirSync(dir, { withFileTypes: true })
    .map((e) => e.name + (e.isDirectory() ? '/' : '')).sort();
  console.log('fs', listing.join(' '), fs.readFileSync(path.join(dir, 'sub', 'b.txt'), 'utf8'),
    (await fs.promises.stat(path.join(dir, 'a.txt'))).size);
  const watched = await new Promise((resolve) => {
    const stream = fs.createReadStream(path.join(dir, 'a.txt'), { encoding: 'utf8' });
    let text = '';
    stream.on('data', (d) => { text += d; });
    stream.on('end', () => resolve(text));
  });
  console.log('stream', watched);
  fs.rmSync(dir, { recursive: true });
  console.log('rm', fs.existsSync(dir));

  // child_process: exec, execFile, spawn with pipes, and an exit status
  console.log('execSync', cp.execSync('echo $((6 * 7))').toString().trim());
  console.log('execFileSync', cp.execFileSync('/bin/echo', ['a', 'b']).toString().trim());
  const status = await new Promise((resolve) => {
    const child = cp.spawn('/bin/sh', ['-c', 'read x; echo got $x; exit 4']);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve([out.trim(), code]));
    child.stdin.end('line\n');
  });
  console.log('spawn', status.join(' '));

  // http on the loopback
  const srv = http.createServer((req, res) => res.end('hello ' + req.method + ' ' + req.url));
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const body = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: srv.address().port, path: '/node' }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(res.statusCode + ' ' + b));
    }).on('error', reject);
  });
  console.log('http', body);
  await new Promise((resolve) => srv.close(resolve));

  // worker threads: two workers compute, the main thread adds up
  const results = await Promise.all([1000000, 2000000].map((n) => new Promise((resolve, reject) => {
    const w = new Worker('const { parentPort, workerData } = require("worker_threads");' +
      'let s = 0; for (let i = 0; i < workerData; i++) s += (i * 7) % 13; parentPort.postMessage(s);',
    { eval: true, workerData: n });
    w.on('message', resolve);
    w.on('error', reject);
  })));
  console.log('workers', results.join(' '), results[0] === work(1000000));

  // timers
  let ticks = 0;
  await new Promise((resolve) => {
    const t = setInterval(() => { if (++ticks === 3) { clearInterval(t); resolve(); } }, 5);
  });
  console.log('timers', ticks);
}

main().catch((e) => { console.log('FAIL', e && e.stack); process.exit(1); });
