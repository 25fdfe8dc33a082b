// Pion (github.com/pion/webrtc v3, Debian's sources) as a Tern client with default settings:
// offer over HTTP, ICE, DTLS, SRTP, the oai-events data channel, a speech Ogg Opus file sent as
// the microphone, the echo reply received. Prints one JSON line with what it measured.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/pion/webrtc/v3"
	"github.com/pion/webrtc/v3/pkg/media"
)

// oggOpusPackets splits an Ogg Opus file into its Opus packets (headers dropped).
func oggOpusPackets(data []byte) ([][]byte, error) {
	var packets [][]byte
	var cur []byte
	for len(data) >= 27 {
		if string(data[:4]) != "OggS" {
			return nil, errors.New("not an Ogg page")
		}
		nseg := int(data[26])
		if len(data) < 27+nseg {
			return nil, errors.New("truncated page")
		}
		lacing := data[27 : 27+nseg]
		body := data[27+nseg:]
		for _, l := range lacing {
			if len(body) < int(l) {
				return nil, errors.New("truncated segment")
			}
			cur = append(cur, body[:l]...)
			body = body[l:]
			if l < 255 {
				packets = append(packets, cur)
				cur = nil
			}
		}
		data = body
	}
	if len(packets) < 2 {
		return nil, errors.New("no Opus packets")
	}
	return packets[2:], nil // OpusHead, OpusTags
}

type result struct {
	ConnectMs     float64  `json:"connect_ms"`
	Events        []string `json:"events"`
	Packets       int      `json:"packets"`
	VoicedPackets int      `json:"voiced_packets"`
	// From input_audio_buffer.speech_stopped to the first voiced reply packet.
	AfterStoppedMs float64            `json:"after_speech_stopped_ms"`
	SessionCreated map[string]any     `json:"session_created"`
	Stamps         map[string]float64 `json:"stamps_ms"`
	HangupStatus   int                `json:"hangup_status"`
}

func main() {
	base := flag.String("base", "http://127.0.0.1:8080", "Tern's base URL")
	ogg := flag.String("ogg", "", "speech as Ogg Opus (20 ms packets)")
	lead := flag.Duration("lead", 500*time.Millisecond, "silence before speaking")
	flag.Parse()
	if err := run(*base, *ogg, *lead); err != nil {
		fmt.Fprintln(os.Stderr, "pion client:", err)
		os.Exit(1)
	}
}

func run(base, ogg string, lead time.Duration) error {
	raw, err := os.ReadFile(ogg)
	if err != nil {
		return err
	}
	packets, err := oggOpusPackets(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", ogg, err)
	}
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pion")
	if err != nil {
		return err
	}
	if _, err = pc.AddTrack(track); err != nil {
		return err
	}
	dc, err := pc.CreateDataChannel("oai-events", nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var mu sync.Mutex
	res := result{Stamps: map[string]float64{}}
	done := make(chan struct{})
	var doneOnce sync.Once
	var firstReply, stoppedAt time.Time
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		var ev map[string]any
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		kind, _ := ev["type"].(string)
		mu.Lock()
		defer mu.Unlock()
		res.Events = append(res.Events, kind)
		if _, seen := res.Stamps[kind]; !seen {
			res.Stamps[kind] = float64(time.Since(t0).Microseconds()) / 1000
		}
		if kind == "input_audio_buffer.speech_stopped" && stoppedAt.IsZero() {
			stoppedAt = time.Now()
		}
		if kind == "session.created" {
			res.SessionCreated, _ = ev["session"].(map[string]any)
		}
		if kind == "output_audio_buffer.stopped" {
			doneOnce.Do(func() { close(done) })
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := t.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			res.Packets++
			// Opus frames of speech are tens of bytes; silence and DTX frames a few.
			if n-12 > 20 {
				res.VoicedPackets++
				if firstReply.IsZero() && !stoppedAt.IsZero() {
					firstReply = time.Now()
				}
			}
			mu.Unlock()
		}
	})
	connected := make(chan struct{})
	var connOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			connOnce.Do(func() { close(connected) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err = pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	resp, err := http.Post(base+"/v1/realtime/calls", "application/sdp",
		bytes.NewReader([]byte(pc.LocalDescription().SDP)))
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("offer: HTTP %d: %s", resp.StatusCode, answer)
	}
	location := resp.Header.Get("Location")
	if err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return err
	}
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		return fmt.Errorf("not connected after 20 s (ICE state %s)", pc.ICEConnectionState())
	}
	res.ConnectMs = float64(time.Since(t0).Microseconds()) / 1000
	// Speak: silence first (a microphone starts before the user talks), then the speech, then
	// silence, every 20 ms.
	silence := []byte{0xf8, 0xff, 0xfe} // an Opus CELT frame of silence
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	frames := int(lead / (20 * time.Millisecond))
	send := func(p []byte) error {
		<-tick.C
		return track.WriteSample(media.Sample{Data: p, Duration: 20 * time.Millisecond})
	}
	for i := 0; i < frames; i++ {
		if err = send(silence); err != nil {
			return err
		}
	}
	for _, p := range packets {
		if err = send(p); err != nil {
			return err
		}
	}
	deadline := time.After(30 * time.Second)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-deadline:
			return fmt.Errorf("no output_audio_buffer.stopped within 30 s after speaking; events %v", res.Events)
		default:
			if err = send(silence); err != nil {
				return err
			}
		}
	}
	mu.Lock()
	if !firstReply.IsZero() {
		res.AfterStoppedMs = float64(firstReply.Sub(stoppedAt).Microseconds()) / 1000
	}
	mu.Unlock()
	req, _ := http.NewRequest(http.MethodDelete, base+location, nil)
	if r, err := http.DefaultClient.Do(req); err == nil {
		res.HangupStatus = r.StatusCode
		r.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	return nil
}
