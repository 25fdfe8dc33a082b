// werift (a TypeScript WebRTC stack) as a Tern client with default settings: offer over HTTP,
// ICE, DTLS, SRTP, the oai-events data channel, Ogg Opus speech sent as the microphone, the echo
// received. Prints one JSON line with what it measured; exits non-zero on failure.
'use strict';
const { RTCPeerConnection, MediaStreamTrack, RtpPacket, RtpHeader } = require('werift');
const { oggOpusPackets, speak, sleep } = require('./ogg');
const { postOffer, hangup, opusPt } = require('./signal');

async function main() {
  const [base, oggPath] = process.argv.slice(2);
  const packets = oggOpusPackets(oggPath);
  const t0 = Date.now();
  const res = { events: [], packets: 0, voiced_packets: 0 };
  let stoppedAt = null;
  let firstReply = null;

  const pc = new RTCPeerConnection({});
  const track = new MediaStreamTrack({ kind: 'audio' });
  const transceiver = pc.addTransceiver(track, { direction: 'sendrecv' });
  const dc = pc.createDataChannel('oai-events');
  dc.onMessage.subscribe((msg) => {
    const ev = JSON.parse(msg.toString());
    res.events.push(ev.type);
    if (ev.type === 'input_audio_buffer.speech_stopped' && !stoppedAt) stoppedAt = Date.now();
  });
  transceiver.onTrack.subscribe((remote) => {
    remote.onReceiveRtp.subscribe((rtp) => {
      res.packets++;
      if (rtp.payload.length > 20) {
        res.voiced_packets++;
        if (stoppedAt && !firstReply) firstReply = Date.now();
      }
    });
  });
  const connected = new Promise((resolve) => {
    pc.connectionStateChange.subscribe((s) => s === 'connected' && resolve());
  });
  await pc.setLocalDescription(await pc.createOffer());
  const { answer, location } = await postOffer(base, pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  await Promise.race([
    connected,
    sleep(20000).then(() => { throw new Error(`not connected after 20 s (${pc.connectionState})`); }),
  ]);
  res.connect_ms = Date.now() - t0;

  const pt = opusPt(answer);
  const ssrc = (Math.random() * 0xffffffff) >>> 0;
  await speak(
    packets,
    (payload, sequenceNumber, timestamp, marker) => {
      const header = new RtpHeader({ payloadType: pt, sequenceNumber, timestamp, ssrc, marker });
      track.writeRtp(new RtpPacket(header, payload));
    },
    () => res.events.includes('output_audio_buffer.stopped'),
    30000,
  );
  // From input_audio_buffer.speech_stopped to the first voiced reply packet.
  res.after_speech_stopped_ms = firstReply ? firstReply - stoppedAt : null;
  res.hangup_status = await hangup(base, location);
  await pc.close();
  console.log(JSON.stringify(res));
  process.exit(0);
}

main().catch((e) => {
  console.error('werift client:', e && e.stack ? e.stack : e);
  process.exit(1);
});
