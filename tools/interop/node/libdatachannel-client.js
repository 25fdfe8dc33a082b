// libdatachannel (C++, through node-datachannel's native API) as a Tern client with default
// settings: an Opus audio track and the oai-events data channel, the offer POSTed over HTTP once
// gathering completes, Ogg Opus speech sent as RTP, the echo received. Prints one JSON line.
'use strict';
const ndc = require('node-datachannel');
const { oggOpusPackets, speak, sleep } = require('./ogg');
const { postOffer, hangup, opusPt } = require('./signal');

async function main() {
  const [base, oggPath] = process.argv.slice(2);
  const packets = oggOpusPackets(oggPath);
  const t0 = Date.now();
  const res = { events: [], packets: 0, voiced_packets: 0 };
  let stoppedAt = null;
  let firstReply = null;

  const pc = new ndc.PeerConnection('tern-client', { iceServers: [] });
  const connected = new Promise((resolve, reject) => {
    pc.onStateChange((s) => {
      if (s === 'connected') resolve();
      if (s === 'failed') reject(new Error('peer connection failed'));
    });
  });
  const ssrc = (Math.random() * 0xffffffff) >>> 0;
  const audio = new ndc.Audio('0', 'SendRecv');
  audio.addOpusCodec(111);
  audio.addSSRC(ssrc, 'libdatachannel', 'stream', 'audio');
  const track = pc.addTrack(audio);
  track.onMessage((msg) => {
    // RTP (RTCP comes through too: payload types 200-206 in the second byte).
    if (msg.length < 12 || (msg[1] >= 200 && msg[1] <= 206)) return;
    res.packets++;
    if (msg.length - 12 > 20) {
      res.voiced_packets++;
      if (stoppedAt && !firstReply) firstReply = Date.now();
    }
  });
  const dc = pc.createDataChannel('oai-events');
  dc.onMessage((msg) => {
    const ev = JSON.parse(msg.toString());
    res.events.push(ev.type);
    if (ev.type === 'input_audio_buffer.speech_stopped' && !stoppedAt) stoppedAt = Date.now();
  });
  // libdatachannel negotiates by itself once a track or channel exists (its default): wait for
  // gathering to complete, then send the whole offer.
  pc.setLocalDescription();
  for (let i = 0; pc.gatheringState() !== 'complete'; i++) {
    if (i > 500) throw new Error('ICE gathering did not complete in 10 s');
    await sleep(20);
  }
  const { answer, location } = await postOffer(base, pc.localDescription().sdp);
  pc.setRemoteDescription(answer, 'answer');
  await Promise.race([
    connected,
    sleep(20000).then(() => { throw new Error(`not connected after 20 s (${pc.state()})`); }),
  ]);
  res.connect_ms = Date.now() - t0;
  const pt = opusPt(answer);
  await speak(
    packets,
    (payload, seq, ts, marker) => {
      const rtp = Buffer.alloc(12 + payload.length);
      rtp[0] = 0x80;
      rtp[1] = (marker ? 0x80 : 0) | pt;
      rtp.writeUInt16BE(seq, 2);
      rtp.writeUInt32BE(ts, 4);
      rtp.writeUInt32BE(ssrc, 8);
      payload.copy(rtp, 12);
      track.sendMessageBinary(rtp);
    },
    () => res.events.includes('output_audio_buffer.stopped'),
    30000,
  );
  // From input_audio_buffer.speech_stopped to the first voiced reply packet.
  res.after_speech_stopped_ms = firstReply ? firstReply - stoppedAt : null;
  res.hangup_status = await hangup(base, location);
  pc.close();
  console.log(JSON.stringify(res));
  ndc.cleanup();
  process.exit(0);
}

main().catch((e) => {
  console.error('libdatachannel client:', e && e.stack ? e.stack : e);
  process.exit(1);
});
