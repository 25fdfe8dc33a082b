'use strict';
// Tern's signaling as a client does it: POST the offer, DELETE the call.

async function postOffer(base, sdp) {
  const r = await fetch(base + '/v1/realtime/calls', {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: sdp,
  });
  const answer = await r.text();
  if (r.status !== 201) throw new Error(`offer: HTTP ${r.status}: ${answer}`);
  return { answer, location: r.headers.get('location') };
}

async function hangup(base, location) {
  return (await fetch(base + location, { method: 'DELETE' })).status;
}

// The Opus payload type the answer chose.
function opusPt(answer) {
  return Number((answer.match(/a=rtpmap:(\d+) opus\/48000/i) || [])[1] || 111);
}

module.exports = { postOffer, hangup, opusPt };
