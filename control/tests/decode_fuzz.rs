//! Property tests for every parser of bytes that arrive from another process: RPC requests and
//! replies, accept messages and C socket addresses. Any input must decode to a value or an
//! error, never panic, and whatever decodes must encode back to the same bytes' meaning.

use netcon_control::addr::{decode_sockaddr, encode_sockaddr};
use netcon_control::wire::{ACCEPT_LEN, AcceptMessage, REPLY_LEN, REQUEST_LEN};
use netcon_control::{Reply, Request};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_decode_total(bytes in proptest::collection::vec(any::<u8>(), 0..REQUEST_LEN + 16)) {
        if let Ok(request) = Request::decode(&bytes) {
            prop_assert_eq!(Request::decode(&request.encode()), Ok(request));
        }
    }

    #[test]
    fn request_decode_full_length(mut bytes in proptest::collection::vec(any::<u8>(), REQUEST_LEN)) {
        // Keep the magic right so decoding reaches the fields behind it.
        bytes[0..2].copy_from_slice(&netcon_control::wire::MAGIC.to_le_bytes());
        if let Ok(request) = Request::decode(&bytes) {
            prop_assert!(request.opt_bytes().len() <= netcon_control::wire::OPT_MAX);
            prop_assert_eq!(Request::decode(&request.encode()), Ok(request));
        }
    }

    #[test]
    fn reply_decode_total(bytes in proptest::collection::vec(any::<u8>(), 0..REPLY_LEN + 16)) {
        if let Ok(reply) = Reply::decode(&bytes) {
            prop_assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
    }

    #[test]
    fn accept_decode_total(bytes in proptest::collection::vec(any::<u8>(), 0..ACCEPT_LEN + 8)) {
        if let Ok(message) = AcceptMessage::decode(&bytes) {
            prop_assert_eq!(AcceptMessage::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn sockaddr_decode_total(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        if let Ok(addr) = decode_sockaddr(&bytes) {
            let mut out = [0u8; 128];
            let len = encode_sockaddr(&addr, &mut out);
            prop_assert_eq!(decode_sockaddr(&out[..len]), Ok(addr));
        }
    }
}
