'use strict';
// Opus packets from an Ogg Opus file (the test fixture, made by opusenc), headers dropped.
const fs = require('fs');

function oggOpusPackets(path) {
  const data = fs.readFileSync(path);
  const packets = [];
  let cur = [];
  let off = 0;
  while (off + 27 <= data.length) {
    if (data.toString('latin1', off, off + 4) !== 'OggS') throw new Error('not an Ogg page');
    const nseg = data[off + 26];
    let body = off + 27 + nseg;
    for (let i = 0; i < nseg; i++) {
      const len = data[off + 27 + i];
      cur.push(data.subarray(body, body + len));
      body += len;
      if (len < 255) {
        packets.push(Buffer.concat(cur));
        cur = [];
      }
    }
    off = body;
  }
  return packets.slice(2); // OpusHead, OpusTags
}

// An Opus frame of silence (CELT, 20 ms): what a muted microphone sends.
const SILENCE = Buffer.from([0xf8, 0xff, 0xfe]);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Sends `packets` every 20 ms after `lead` silence frames, then silence until `done()` or the
// deadline; `send(payload, seq, ts, marker)` writes one packet.
async function speak(packets, send, done, timeoutMs) {
  let seq = 1;
  let ts = 0;
  let next = Date.now();
  const one = async (payload, marker) => {
    next += 20;
    await sleep(Math.max(0, next - Date.now()));
    send(payload, seq, ts, marker);
    seq = (seq + 1) & 0xffff;
    ts = (ts + 960) >>> 0;
  };
  for (let i = 0; i < 25; i++) await one(SILENCE, false);
  for (let i = 0; i < packets.length; i++) await one(packets[i], i === 0);
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the reply to end');
    await one(SILENCE, false);
  }
}

module.exports = { oggOpusPackets, speak, sleep };
