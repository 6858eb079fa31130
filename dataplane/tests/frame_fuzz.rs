//! Property tests for the parsers of frames that arrive from the TAP: flow steering and the
//! offload rewrites. Any frame, however short or malformed, must be handled without a panic,
//! and steering must send a flow's frames to the worker that owns it.

use std::net::{Ipv4Addr, Ipv6Addr};

use netcon_dataplane::steer::{Steer, WorkerId, owner, steer};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn steer_total(frame in proptest::collection::vec(any::<u8>(), 0..128), workers in 1usize..8) {
        match steer(&frame, 14, workers) {
            Steer::To(WorkerId(w)) => prop_assert!(w < workers),
            Steer::Here | Steer::Everyone => {}
        }
        let _ = steer(&frame, 0, workers);
    }

    #[test]
    fn steer_matches_owner(ip in any::<[u8; 4]>(), sport in any::<u16>(), dport in any::<u16>(), workers in 2usize..8) {
        let mut frame = vec![0u8; 54];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        frame[14] = 0x45;
        frame[23] = 6;
        frame[26..30].copy_from_slice(&ip);
        frame[34..36].copy_from_slice(&sport.to_be_bytes());
        frame[36..38].copy_from_slice(&dport.to_be_bytes());
        let expected = owner(Ipv4Addr::from(ip), sport, dport, workers);
        prop_assert_eq!(steer(&frame, 14, workers), Steer::To(expected));
    }

    #[test]
    fn steer_matches_owner_ipv6(ip in any::<[u8; 16]>(), sport in any::<u16>(), dport in any::<u16>(), workers in 2usize..8) {
        let mut frame = vec![0u8; 74];
        frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        frame[14] = 0x60;
        frame[20] = 6;
        frame[22..38].copy_from_slice(&ip);
        frame[54..56].copy_from_slice(&sport.to_be_bytes());
        frame[56..58].copy_from_slice(&dport.to_be_bytes());
        let expected = owner(Ipv6Addr::from(ip), sport, dport, workers);
        prop_assert_eq!(steer(&frame, 14, workers), Steer::To(expected));
        prop_assert_eq!(steer(&frame[14..], 0, workers), Steer::To(expected));
    }

    #[test]
    fn offload_rewrites_total_ipv6(mut frame in proptest::collection::vec(any::<u8>(), 0..200), mss in any::<u16>()) {
        // Make many inputs look like IPv6 TCP so the option walk is reached.
        if frame.len() > 54 {
            frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            frame[14] = 0x60 | (frame[14] & 0x0f);
            frame[20] = 6;
        }
        netcon_dataplane::offload::raise_syn_mss(&mut frame, 14, mss);
        let mut header = [0u8; netcon_dataplane::offload::VNET_HDR_LEN];
        netcon_dataplane::offload::prepare_egress(&mut header, &mut frame, 14, mss);
    }

    #[test]
    fn hairpin_total(frame in proptest::collection::vec(any::<u8>(), 0..120)) {
        use netcon_dataplane::hairpin::{OwnIpv6, classify, neighbour_advertisement};
        let own = OwnIpv6 { global: Some("fd00::2".parse().unwrap()), link_local: None };
        let _ = classify(&frame, 14, Ipv4Addr::new(10, 77, 0, 2), &own);
        let _ = classify(&frame, 0, Ipv4Addr::new(10, 77, 0, 2), &own);
        let _ = neighbour_advertisement(&frame, [2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn offload_rewrites_total(mut frame in proptest::collection::vec(any::<u8>(), 0..200), mss in any::<u16>()) {
        // Make many inputs look like IPv4 TCP so the option walk is reached.
        if frame.len() > 34 {
            frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            frame[14] = 0x40 | (frame[14] & 0x0f);
            frame[23] = 6;
        }
        netcon_dataplane::offload::raise_syn_mss(&mut frame, 14, mss);
        let mut header = [0u8; netcon_dataplane::offload::VNET_HDR_LEN];
        netcon_dataplane::offload::prepare_egress(&mut header, &mut frame, 14, mss);
    }
}
