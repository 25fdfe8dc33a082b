// The official @openai/agents-realtime WebRTC transport, as an app on its own origin uses it: only
// baseUrl points at Tern. The test reads window.result.
import { OpenAIRealtimeWebRTC } from '@openai/agents-realtime';

const q = new URLSearchParams(location.search);
const result = (window.result = { state: 'init', events: [], error: null });

async function inboundEnergy(pc) {
  let energy = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') energy += s.totalAudioEnergy || 0;
  });
  return energy;
}

function waitEvent(type, ms) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const tick = () => {
      if (result.events.includes(type)) return resolve(performance.now());
      if (performance.now() - t0 > ms) return reject(new Error(`no ${type} within ${ms} ms`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

async function main() {
  const transport = new OpenAIRealtimeWebRTC({ baseUrl: q.get('base') + '/v1/realtime/calls' });
  transport.on('*', (ev) => result.events.push(ev.type));
  const t0 = performance.now();
  result.state = 'connecting';
  await transport.connect({
    apiKey: q.get('key'),
    model: 'gpt-realtime',
    initialSessionConfig: { instructions: 'Answer briefly.' },
  });
  result.connectMs = performance.now() - t0;
  result.callId = transport.callId;
  result.state = 'connected';
  await waitEvent('input_audio_buffer.speech_stopped', 20000);
  await waitEvent('output_audio_buffer.started', 10000);
  // Let the reply play, then check that audio arrived and was decoded.
  await new Promise((r) => setTimeout(r, 800));
  result.energy = await inboundEnergy(transport.connectionState.peerConnection);
  // Barge in the SDK's way: response.cancel, then output_audio_buffer.clear.
  const tInt = performance.now();
  transport.interrupt();
  result.clearedMs = (await waitEvent('output_audio_buffer.cleared', 5000)) - tInt;
  transport.close();
  result.state = 'done';
}

main().catch((e) => {
  result.error = String(e && e.stack ? e.stack : e);
  result.state = 'failed';
});
