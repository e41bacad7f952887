//! Large agent messages as fragments (`Fragment` in agent.proto): split on the sending side,
//! joined on the receiving side. A stream's receive buffer (tonic's, and HTTP/2's below it) keeps
//! the size of the largest message it ever held for as long as the device stays connected; a
//! whole inventory is tens of KiB, a fragment is [`FRAGMENT_BYTES`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use prost::Message;

use crate::agent::{AgentMessage, Fragment, agent_message};

/// Largest encoded message sent whole; a larger one goes as fragments of this many bytes.
pub const FRAGMENT_BYTES: usize = 2 * 1024;

/// `message` as it goes on the stream: itself when its encoding fits a fragment, otherwise the
/// fragments of its encoding, in order.
pub fn fragment(message: AgentMessage) -> Vec<AgentMessage> {
    if message.encoded_len() <= FRAGMENT_BYTES {
        return vec![message];
    }
    let bytes = message.encode_to_vec();
    let count = bytes.len().div_ceil(FRAGMENT_BYTES);
    bytes
        .chunks(FRAGMENT_BYTES)
        .enumerate()
        .map(|(i, part)| AgentMessage {
            body: Some(agent_message::Body::Fragment(Fragment {
                data: part.to_vec(),
                more: i + 1 < count,
            })),
        })
        .collect()
}

/// The messages of `source`, each large one as its fragments: what a sender hands to the stream.
/// Splitting here, where the stream takes its messages one at a time, keeps a message's fragments
/// together however many tasks send on the channel behind `source`.
pub fn fragmenting<S>(source: S) -> Fragmenting<S>
where
    S: Stream<Item = AgentMessage> + Unpin,
{
    Fragmenting {
        source,
        pending: VecDeque::new(),
    }
}

/// See [`fragmenting`].
#[derive(Debug)]
pub struct Fragmenting<S> {
    source: S,
    pending: VecDeque<AgentMessage>,
}

impl<S> Stream for Fragmenting<S>
where
    S: Stream<Item = AgentMessage> + Unpin,
{
    type Item = AgentMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AgentMessage>> {
        let this = self.get_mut();
        if let Some(next) = this.pending.pop_front() {
            return Poll::Ready(Some(next));
        }
        match Pin::new(&mut this.source).poll_next(cx) {
            Poll::Ready(Some(message)) => {
                this.pending.extend(fragment(message));
                Poll::Ready(this.pending.pop_front())
            }
            other => other,
        }
    }
}

/// Why fragments could not be joined; the stream cannot go on after either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentError {
    /// The joined message would exceed the receiver's limit.
    TooLarge,
    /// Not a well-formed sequence of fragments (the text says what was wrong).
    Malformed(&'static str),
}

impl std::fmt::Display for FragmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("message too large"),
            Self::Malformed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for FragmentError {}

/// Joins fragments as they arrive on one stream.
#[derive(Debug)]
pub struct Reassembly {
    joined: Vec<u8>,
    /// Whether a fragmented message is under way (it may have had an empty first fragment).
    open: bool,
    limit: usize,
}

impl Reassembly {
    /// A reassembly refusing joined messages larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            joined: Vec::new(),
            open: false,
            limit,
        }
    }

    /// The next whole message: `message` itself when it is not a fragment, the joined message when
    /// it is a last fragment, `None` while more fragments are due. The memory of a joined message
    /// is given back as soon as it is whole.
    pub fn accept(&mut self, message: AgentMessage) -> Result<Option<AgentMessage>, FragmentError> {
        let Some(agent_message::Body::Fragment(fragment)) = message.body else {
            if self.open {
                return Err(FragmentError::Malformed(
                    "a message arrived inside a fragmented one",
                ));
            }
            return Ok(Some(message));
        };
        if self.joined.len() + fragment.data.len() > self.limit {
            self.joined = Vec::new();
            self.open = false;
            return Err(FragmentError::TooLarge);
        }
        self.joined.extend_from_slice(&fragment.data);
        self.open = fragment.more;
        if fragment.more {
            return Ok(None);
        }
        let joined = std::mem::take(&mut self.joined);
        let whole = AgentMessage::decode(joined.as_slice())
            .map_err(|_| FragmentError::Malformed("the joined fragments are not a message"))?;
        if matches!(whole.body, Some(agent_message::Body::Fragment(_))) {
            return Err(FragmentError::Malformed("a fragment inside a fragment"));
        }
        Ok(Some(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{Heartbeat, Inventory};

    fn inventory(bytes: usize) -> AgentMessage {
        AgentMessage {
            body: Some(agent_message::Body::Inventory(Inventory {
                facts_json: "x".repeat(bytes),
            })),
        }
    }

    fn fragment_of(data: &[u8], more: bool) -> AgentMessage {
        AgentMessage {
            body: Some(agent_message::Body::Fragment(Fragment {
                data: data.to_vec(),
                more,
            })),
        }
    }

    #[test]
    fn small_messages_go_whole_and_large_ones_round_trip() {
        let small = inventory(100);
        assert_eq!(fragment(small.clone()), vec![small.clone()]);
        let large = inventory(50_000);
        let parts = fragment(large.clone());
        assert_eq!(parts.len(), large.encoded_len().div_ceil(FRAGMENT_BYTES));
        assert!(parts.iter().all(|p| p.encoded_len() <= FRAGMENT_BYTES + 16));
        let mut reassembly = Reassembly::new(1 << 20);
        let mut out = Vec::new();
        for part in parts.into_iter().chain([small.clone()]) {
            if let Some(whole) = reassembly.accept(part).unwrap() {
                out.push(whole);
            }
        }
        assert_eq!(out, vec![large, small]);
        assert_eq!(
            reassembly.joined.capacity(),
            0,
            "the joined message's memory is given back"
        );
    }

    /// A stream over a list, for driving [`Fragmenting`] by hand.
    struct Listed(VecDeque<AgentMessage>);

    impl Stream for Listed {
        type Item = AgentMessage;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<AgentMessage>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    #[test]
    fn a_stream_sends_each_large_message_as_consecutive_fragments() {
        let (large, small) = (inventory(10_000), inventory(10));
        let mut stream = fragmenting(Listed(VecDeque::from([large.clone(), small.clone()])));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut sent = Vec::new();
        while let Poll::Ready(Some(message)) = Pin::new(&mut stream).poll_next(&mut cx) {
            sent.push(message);
        }
        assert_eq!(sent.len(), fragment(large.clone()).len() + 1);
        assert_eq!(sent.last(), Some(&small));
        let mut reassembly = Reassembly::new(1 << 20);
        let whole: Vec<_> = sent
            .into_iter()
            .filter_map(|m| reassembly.accept(m).unwrap())
            .collect();
        assert_eq!(whole, vec![large, small]);
    }

    #[test]
    fn bad_sequences_are_refused() {
        let heartbeat = AgentMessage {
            body: Some(agent_message::Body::Heartbeat(Heartbeat { seq: 1 })),
        };
        let mut r = Reassembly::new(1 << 20);
        assert_eq!(r.accept(fragment_of(b"abc", true)), Ok(None));
        assert!(matches!(r.accept(heartbeat), Err(FragmentError::Malformed(_))));

        let mut r = Reassembly::new(1 << 20);
        assert!(matches!(
            r.accept(fragment_of(&[0xff, 0xff, 0xff], false)),
            Err(FragmentError::Malformed(_))
        ));

        let mut r = Reassembly::new(1 << 20);
        let nested = fragment_of(b"", false).encode_to_vec();
        assert!(matches!(
            r.accept(fragment_of(&nested, false)),
            Err(FragmentError::Malformed(_))
        ));

        let mut r = Reassembly::new(4096);
        assert_eq!(r.accept(fragment_of(&[0; 3000], true)), Ok(None));
        assert_eq!(
            r.accept(fragment_of(&[0; 3000], true)),
            Err(FragmentError::TooLarge)
        );
        assert_eq!(r.joined.capacity(), 0);
    }
}
