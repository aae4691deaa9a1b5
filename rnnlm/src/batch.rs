//! Cutting a token stream into B parallel streams and T-step windows.

/// B contiguous streams over a token sequence, read window by window.
///
/// Stream b covers tokens `[b L, (b + 1) L]` of the sequence, L = the stream
/// length; a window of T steps starting at offset s feeds tokens `s..s + T`
/// of every stream and predicts tokens `s + 1..s + T + 1`. Tokens after the
/// last whole stream are not used (fewer than B of them).
#[derive(Clone, Debug)]
pub struct Streams<'a> {
    tokens: &'a [u32],
    batch: usize,
    stream_len: usize,
}

impl<'a> Streams<'a> {
    /// Cuts `tokens` into `batch` streams. Returns `None` when a stream would
    /// have fewer than 2 tokens (nothing to predict).
    pub fn new(tokens: &'a [u32], batch: usize) -> Option<Streams<'a>> {
        let stream_len = tokens.len().checked_div(batch)?;
        (stream_len >= 2).then_some(Streams {
            tokens,
            batch,
            stream_len,
        })
    }

    /// Number of predictions per stream: the stream length minus one.
    pub fn predictions_per_stream(&self) -> usize {
        self.stream_len - 1
    }

    /// Number of windows of up to `steps` steps in one pass; the last one may
    /// be shorter.
    pub fn windows(&self, steps: usize) -> usize {
        self.predictions_per_stream().div_ceil(steps)
    }

    /// Steps in window `window` of `steps`-step windows.
    pub fn window_steps(&self, window: usize, steps: usize) -> usize {
        steps.min(self.predictions_per_stream() - window * steps)
    }

    /// Writes window `window` time-major into `inputs` and `targets`
    /// (`(steps, B)`) and returns the number of steps it has.
    pub fn fill(
        &self,
        window: usize,
        steps: usize,
        inputs: &mut [u32],
        targets: &mut [u32],
    ) -> usize {
        let start = window * steps;
        let n = self.window_steps(window, steps);
        for t in 0..n {
            for b in 0..self.batch {
                let position = b * self.stream_len + start + t;
                inputs[t * self.batch + b] = self.tokens[position];
                targets[t * self.batch + b] = self.tokens[position + 1];
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_fill_time_major_windows() {
        let tokens: Vec<u32> = (0..23).collect();
        let streams = Streams::new(&tokens, 3).unwrap();
        // 23 tokens in 3 streams of 7 (token 21 and 22 unused): 6 predictions each.
        assert_eq!(streams.predictions_per_stream(), 6);
        assert_eq!(streams.windows(4), 2);
        let mut inputs = [0u32; 12];
        let mut targets = [0u32; 12];
        assert_eq!(streams.fill(0, 4, &mut inputs, &mut targets), 4);
        assert_eq!(inputs, [0, 7, 14, 1, 8, 15, 2, 9, 16, 3, 10, 17]);
        assert_eq!(targets, [1, 8, 15, 2, 9, 16, 3, 10, 17, 4, 11, 18]);
        assert_eq!(streams.fill(1, 4, &mut inputs, &mut targets), 2);
        assert_eq!(&inputs[..6], &[4, 11, 18, 5, 12, 19]);
        assert_eq!(&targets[..6], &[5, 12, 19, 6, 13, 20]);
    }

    #[test]
    fn streams_reject_too_short_sequences() {
        assert!(Streams::new(&[1, 2, 3], 2).is_none());
        assert!(Streams::new(&[1, 2, 3, 4], 0).is_none());
        assert!(Streams::new(&[1, 2, 3, 4], 2).is_some());
    }
}
