//! WebSocket framing (RFC 6455 §5.2) followed on the worker-to-client direction of a
//! tunnel, so corral can close a WebSocket at its drain deadline with a close frame of its
//! own. A control frame may come between the fragments of a message (§5.4) but never
//! inside a frame: the close frame goes in at the next frame boundary. Only the frame
//! headers are read, never the payload; nothing is buffered.

/// Where the byte stream is, frame-wise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Frames {
    /// Header bytes seen of the frame being read, and the first two of them.
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
}

impl Frames {
    /// Whether the bytes so far end exactly at the end of a frame.
    pub(super) fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// Follows `bytes`; returns how many of them end at the first frame boundary reached
    /// within them (0 when already at one), or `None` when they end inside a frame.
    /// Only the returned prefix has been followed; the caller goes on from there.
    pub(super) fn until_boundary(&mut self, bytes: &[u8]) -> Option<usize> {
        if self.at_boundary() {
            return Some(0);
        }
        let mut at = 0;
        while at < bytes.len() {
            at += self.step(&bytes[at..]);
            if self.at_boundary() {
                return Some(at);
            }
        }
        None
    }

    /// Follows all of `bytes`.
    pub(super) fn follow(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while at < bytes.len() {
            at += self.step(&bytes[at..]);
        }
    }

    /// Takes in the next bytes of the current header or payload; how many it took.
    fn step(&mut self, bytes: &[u8]) -> usize {
        if self.payload_left > 0 {
            let n = (bytes.len() as u64).min(self.payload_left);
            self.payload_left -= n;
            return n as usize;
        }
        let mut taken = 0;
        for &b in bytes {
            self.head[self.have] = b;
            self.have += 1;
            taken += 1;
            if let Some(payload) = self.header_done() {
                self.have = 0;
                self.payload_left = payload;
                break;
            }
        }
        taken
    }

    /// The payload length once the header is whole.
    fn header_done(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let masked = self.head[1] & 0x80 != 0;
        let short = self.head[1] & 0x7f;
        let extended = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let needed = 2 + extended + if masked { 4 } else { 0 };
        if self.have < needed {
            return None;
        }
        Some(match short {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => u64::from_be_bytes([
                self.head[2],
                self.head[3],
                self.head[4],
                self.head[5],
                self.head[6],
                self.head[7],
                self.head[8],
                self.head[9],
            ]),
            n => u64::from(n),
        })
    }
}

/// A server's close frame (unmasked) with `code` and a short reason.
pub(super) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.push(0x88);
    frame.push(2 + reason.len() as u8);
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// One frame as a server (or, masked, a client) writes it.
    fn frame(opcode: u8, fin: bool, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_close_frame_is_what_rfc_6455_says() {
        assert_eq!(close_frame(1012, "restart"), b"\x88\x09\x03\xf4restart");
        assert_eq!(close_frame(1001, "").len(), 4);
        assert_eq!(close_frame(1001, &"x".repeat(500)).len(), 2 + 125);
    }

    proptest! {
        /// Cut anywhere, in pieces of any size, the boundaries found are exactly the ends
        /// of the frames, whatever their sizes, masks and fragmentation.
        #[test]
        fn boundaries_are_the_ends_of_frames(
            frames in prop::collection::vec(
                (prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]), any::<bool>(), any::<bool>(),
                 prop_oneof![0usize..130, 65_530usize..65_545, Just(70_000usize)]),
                1..8),
            piece in 1usize..5000,
        ) {
            let mut stream = Vec::new();
            let mut ends = Vec::new();
            for (opcode, fin, masked, len) in &frames {
                stream.extend(frame(*opcode, *fin, *masked, &vec![7u8; *len]));
                ends.push(stream.len());
            }
            // Every boundary, found by asking at each piece.
            let mut found = Vec::new();
            let mut tracker = Frames::default();
            let mut at = 0;
            while at < stream.len() {
                let end = (at + piece).min(stream.len());
                let mut chunk = &stream[at..end];
                let mut base = at;
                while let Some(n) = tracker.until_boundary(chunk) {
                    if n == 0 {
                        // At a boundary already: follow one byte on to look for the next.
                        if chunk.is_empty() { break; }
                        tracker.follow(&chunk[..1]);
                        chunk = &chunk[1..];
                        base += 1;
                        continue;
                    }
                    found.push(base + n);
                    chunk = &chunk[n..];
                    base += n;
                }
                at = end;
            }
            prop_assert_eq!(found, ends.clone());
            // Following whole pieces ends at a boundary exactly at the end.
            let mut tracker = Frames::default();
            for chunk in stream.chunks(piece) {
                tracker.follow(chunk);
            }
            prop_assert!(tracker.at_boundary());
        }
    }
}
