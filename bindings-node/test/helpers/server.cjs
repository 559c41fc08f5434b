'use strict';
// Starts a real `ductape server --dev` process on a free port for a test file.
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..', '..', '..');

function ductapeBin() {
  return process.env.DUCTAPE_BIN || path.join(ROOT, 'target', 'debug', 'ductape');
}

/** Resolves { url, accessKey, logs(), stop() } once the server printed its two lines. */
function startServer() {
  const env = { ...process.env };
  delete env.DUCTAPE_ACCESS_KEY;
  const child = spawn(ductapeBin(), ['server', '--dev', '--addr', '127.0.0.1:0'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = [];
  child.stderr.on('data', (d) => logs.push(String(d)));
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    const found = {};
    const timer = setTimeout(() => reject(new Error('server did not start')), 20000);
    child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${logs.join('')}`)));
    lines.on('line', (line) => {
      const [k, ...v] = line.split('=');
      found[k] = v.join('=');
      if (found.DUCTAPE_URL && found.DUCTAPE_ACCESS_KEY) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve({
          url: found.DUCTAPE_URL,
          accessKey: found.DUCTAPE_ACCESS_KEY,
          logs: () => logs.join(''),
          stop: () => child.kill('SIGKILL'),
        });
      }
    });
  });
}

module.exports = { startServer, ductapeBin, ROOT };
