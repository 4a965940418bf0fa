//! Cutting a guest's byte stream into lines of bounded length, without ever holding more
//! than one line.

use weft_model::announce::MAX_LINE;

/// What the stream holds next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A complete line of at most [`MAX_LINE`] bytes, without its newline.
    Line(&'a [u8]),
    /// A line longer than [`MAX_LINE`]: reported once, as soon as it is too long; its bytes
    /// are skipped up to the next newline.
    Oversized,
}

/// Keeps the start of a line across reads. Its buffer never grows past [`MAX_LINE`].
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    /// Inside an oversized line: skipping up to the next newline.
    skipping: bool,
}

impl LineSplitter {
    /// Takes the next bytes of the stream and hands every frame they complete to `each`.
    pub(crate) fn push(&mut self, mut chunk: &[u8], mut each: impl FnMut(Frame<'_>)) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let piece = &chunk[..end];
            chunk = &chunk[end + 1..];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                // The common case: the whole line is in this read; no copy.
                each(if piece.len() > MAX_LINE {
                    Frame::Oversized
                } else {
                    Frame::Line(piece)
                });
            } else if self.partial.len() + piece.len() > MAX_LINE {
                self.partial.clear();
                each(Frame::Oversized);
            } else {
                self.partial.extend_from_slice(piece);
                each(Frame::Line(&self.partial));
                self.partial.clear();
            }
        }

        // What is left has no newline yet.
        if self.skipping || chunk.is_empty() {
            return;
        }
        if self.partial.len() + chunk.len() > MAX_LINE {
            self.partial.clear();
            self.skipping = true;
            each(Frame::Oversized);
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    /// The bytes held for a line not finished yet.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Line(Vec<u8>),
        Oversized,
    }

    fn feed(splitter: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Out> {
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |frame| {
                out.push(match frame {
                    Frame::Line(l) => Out::Line(l.to_vec()),
                    Frame::Oversized => Out::Oversized,
                })
            });
        }
        out
    }

    fn line(s: &str) -> Out {
        Out::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_across_and_within_reads() {
        let mut s = LineSplitter::default();
        let out = feed(&mut s, &[b"ab", b"c\nde", b"f\n\ng\nh"]);
        assert_eq!(out, [line("abc"), line("def"), line(""), line("g")]);
        assert_eq!(s.held(), 1);
        assert_eq!(feed(&mut s, &[b"\n"]), [line("h")]);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes() {
        let mut s = LineSplitter::default();
        let full = vec![b'x'; MAX_LINE];
        let mut chunk = full.clone();
        chunk.push(b'\n');
        assert_eq!(feed(&mut s, &[&chunk]), [Out::Line(full.clone())]);
        // Also when it arrives in pieces.
        let (a, b) = chunk.split_at(1000);
        assert_eq!(feed(&mut s, &[a, b]), [Out::Line(full)]);
    }

    #[test]
    fn a_longer_line_is_reported_once_and_skipped_to_its_end() {
        let mut s = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(feed(&mut s, &[&long]), [Out::Oversized]);
        assert_eq!(s.held(), 0);
        // More of it, megabytes even, holds nothing and reports nothing more.
        let more = vec![b'y'; 1 << 20];
        assert_eq!(feed(&mut s, &[&more, &more]), []);
        assert_eq!(s.held(), 0);
        // Reading resumes after its newline.
        assert_eq!(feed(&mut s, &[b"yy\nnext\n"]), [line("next")]);

        // Over the limit across reads, and within one read followed by a good line.
        let half = vec![b'x'; MAX_LINE / 2 + 1];
        assert_eq!(feed(&mut s, &[&half, &half]), [Out::Oversized]);
        assert_eq!(feed(&mut s, &[b"\n"]), []);
        let mut chunk = long.clone();
        chunk.extend_from_slice(b"\nok\n");
        assert_eq!(feed(&mut s, &[&chunk]), [Out::Oversized, line("ok")]);
    }

    #[test]
    fn the_buffer_never_exceeds_the_limit() {
        let mut s = LineSplitter::default();
        for size in [1, 100, 4095, 4096, 4097, 10_000] {
            let chunk = vec![b'z'; size];
            for _ in 0..3 {
                s.push(&chunk, |_| {});
                assert!(s.held() <= MAX_LINE);
                assert!(s.partial.capacity() <= 2 * MAX_LINE);
            }
        }
    }
}
