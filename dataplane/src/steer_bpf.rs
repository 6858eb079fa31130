//! The eBPF program that lets the kernel put each frame on the TAP queue of the worker that
//! owns it (TUNSETSTEERINGEBPF), so frames need no handover between workers. It computes the
//! same FNV-1a hashes as [`crate::steer::owner`] and [`crate::steer::udp_owner`]: TCP by the
//! remote address and both ports, UDP by the local port. Everything else (ARP, neighbour
//! discovery, ICMP, IPv4 fragments, IPv6 extension headers) goes to queue 0, and the worker
//! that reads it steers it as before.
//!
//! Without the program the kernel picks a queue by its own flow hash until it has seen a frame
//! of the flow written on some queue. With two workers, about 1.3 frames of each short
//! connection (connect, 64 B each way, close) went to the other worker, and each cost a
//! handover and a wake-up and could fall behind later frames of the same connection.

/// One eBPF instruction, laid out as `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// Destination register in the low nibble, source register in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/bpf.h).
const LD: u8 = 0x00;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const H: u8 = 0x08;
const B: u8 = 0x10;
const ABS: u8 = 0x20;
const IND: u8 = 0x40;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const RSH: u8 = 0x70;
const MUL: u8 = 0x20;
const MOD: u8 = 0x90;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const X: u8 = 0x08;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const JSET: u8 = 0x40;
const EXIT: u8 = 0x90;

/// Registers: r0 receives loads and the result, r1 points at the packet at entry, and r6 must
/// point at it for packet loads; r7 is the IPv4 header length, r8 the hash, r9 the protocol.
const R0: u8 = 0;
const R1: u8 = 1;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: i32 = 0x0100_0193;

/// A jump target, resolved once the program is complete.
#[derive(Clone, Copy)]
enum Label {
    Ipv4,
    Ipv6,
    Udp4,
    Udp6,
    Done,
    Zero,
}

/// Builds a program with forward jumps to labels.
struct Assembler {
    insns: Vec<Insn>,
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Assembler {
    fn op(&mut self, code: u8, dst: u8, src: u8, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off: 0,
            imm,
        });
    }

    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.op(JMP | code, dst, 0, imm);
    }

    fn label(&mut self, label: Label) {
        self.labels.push((label, self.insns.len()));
    }

    /// Loads the byte at packet offset `at` (plus r7 when `indirect`) into r0.
    fn load_byte(&mut self, at: usize, indirect: bool) {
        let (mode, src) = if indirect { (IND, R7) } else { (ABS, 0) };
        self.op(LD | B | mode, 0, src, at as i32);
    }

    /// Folds the bytes at `at..at + len` into the hash in r8.
    fn hash_bytes(&mut self, at: usize, len: usize, indirect: bool) {
        for offset in at..at + len {
            self.load_byte(offset, indirect);
            self.op(ALU | XOR | X, R8, R0, 0);
            self.op(ALU | MUL, R8, 0, FNV_PRIME);
        }
    }

    fn finish(mut self) -> Vec<Insn> {
        for &(at, to) in &self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(label, _)| std::mem::discriminant(label) == std::mem::discriminant(&to))
                .map(|&(_, index)| index)
                .expect("every label is placed");
            self.insns[at].off = (target - at - 1) as i16;
        }
        self.insns
    }
}

/// Returns the program for frames with an `l2_len`-byte link header (14 on a TAP, 0 on a TUN)
/// and `workers` queues. Its result is the queue index, below `workers`.
pub fn program(l2_len: usize, workers: usize) -> Vec<Insn> {
    let l = l2_len;
    let mut asm = Assembler {
        insns: Vec::new(),
        jumps: Vec::new(),
        labels: Vec::new(),
    };
    asm.op(ALU64 | MOV | X, R6, R1, 0);

    // The IP version, from the EtherType on a TAP or the first nibble on a TUN.
    if l == 14 {
        asm.op(LD | H | ABS, 0, 0, 12);
        asm.jump(JEQ, R0, 0x0800, Label::Ipv4);
        asm.jump(JEQ, R0, 0x86dd, Label::Ipv6);
    } else {
        asm.load_byte(l, false);
        asm.op(ALU | RSH, R0, 0, 4);
        asm.jump(JEQ, R0, 4, Label::Ipv4);
        asm.jump(JEQ, R0, 6, Label::Ipv6);
    }
    asm.jump(JA, 0, 0, Label::Zero);

    // IPv4: first fragments only, TCP by source address and ports, UDP by destination port.
    asm.label(Label::Ipv4);
    asm.load_byte(l + 9, false);
    asm.op(ALU | MOV | X, R9, R0, 0);
    asm.op(LD | H | ABS, 0, 0, (l + 6) as i32);
    asm.jump(JSET, R0, 0x1fff, Label::Zero);
    asm.load_byte(l, false);
    asm.op(ALU | AND, R0, 0, 0x0f);
    asm.op(ALU | LSH, R0, 0, 2);
    asm.op(ALU64 | MOV | X, R7, R0, 0);
    asm.op(ALU | MOV, R8, 0, FNV_OFFSET as i32);
    asm.jump(JEQ, R9, 17, Label::Udp4);
    asm.jump(JNE, R9, 6, Label::Zero);
    asm.hash_bytes(l + 12, 4, false);
    asm.hash_bytes(l, 4, true);
    asm.jump(JA, 0, 0, Label::Done);
    asm.label(Label::Udp4);
    asm.hash_bytes(l + 2, 2, true);
    asm.jump(JA, 0, 0, Label::Done);

    // IPv6 without extension headers: the same, with the 16-byte source address.
    asm.label(Label::Ipv6);
    asm.load_byte(l + 6, false);
    asm.op(ALU | MOV, R8, 0, FNV_OFFSET as i32);
    asm.jump(JEQ, R0, 17, Label::Udp6);
    asm.jump(JNE, R0, 6, Label::Zero);
    asm.hash_bytes(l + 8, 16, false);
    asm.hash_bytes(l + 40, 4, false);
    asm.jump(JA, 0, 0, Label::Done);
    asm.label(Label::Udp6);
    asm.hash_bytes(l + 42, 2, false);

    asm.label(Label::Done);
    asm.op(ALU | MOV | X, R0, R8, 0);
    asm.op(ALU | MOD, R0, 0, workers.max(1) as i32);
    asm.op(JMP | EXIT, 0, 0, 0);
    asm.label(Label::Zero);
    asm.op(ALU | MOV, R0, 0, 0);
    asm.op(JMP | EXIT, 0, 0, 0);
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steer::{Steer, steer};
    use proptest::prelude::*;

    /// Runs `program` on `packet` the way the kernel does for the instructions it uses. A load
    /// past the end ends the program with 0, as in the kernel.
    fn run(program: &[Insn], packet: &[u8]) -> u32 {
        let mut regs = [0u64; 11];
        let mut pc = 0;
        loop {
            let insn = program[pc];
            let (dst, src) = ((insn.regs & 0x0f) as usize, (insn.regs >> 4) as usize);
            let imm = insn.imm as u32;
            pc += 1;
            let size = insn.code & 0x18;
            match insn.code & 0x07 {
                LD => {
                    let base = if insn.code & 0xe0 == IND {
                        regs[src] as usize
                    } else {
                        0
                    };
                    let at = base + insn.imm as usize;
                    let len = if size == H { 2 } else { 1 };
                    let Some(bytes) = packet.get(at..at + len) else {
                        return 0;
                    };
                    regs[0] = bytes.iter().fold(0, |v, &b| (v << 8) | u64::from(b));
                }
                ALU | ALU64 => {
                    let operand = if insn.code & X != 0 {
                        regs[src] as u32
                    } else {
                        imm
                    };
                    let value = regs[dst] as u32;
                    let result = match insn.code & 0xf0 {
                        AND => value & operand,
                        LSH => value << operand,
                        RSH => value >> operand,
                        MUL => value.wrapping_mul(operand),
                        MOD => value % operand,
                        XOR => value ^ operand,
                        MOV if insn.code & 0x07 == ALU64 => {
                            regs[dst] = regs[src];
                            continue;
                        }
                        MOV => operand,
                        other => panic!("unexpected ALU operation {other:#x}"),
                    };
                    regs[dst] = u64::from(result);
                }
                JMP => {
                    let value = regs[dst] as u32;
                    let taken = match insn.code & 0xf0 {
                        JA => true,
                        JEQ => value == imm,
                        JNE => value != imm,
                        JSET => value & imm != 0,
                        EXIT => return regs[0] as u32,
                        other => panic!("unexpected jump {other:#x}"),
                    };
                    if taken {
                        pc = (pc as i64 + i64::from(insn.off)) as usize;
                    }
                }
                other => panic!("unexpected class {other:#x}"),
            }
        }
    }

    fn ipv4_frame(protocol: u8, options: usize, src: [u8; 4], ports: [u16; 2]) -> Vec<u8> {
        let ihl = 20 + options * 4;
        let mut frame = vec![0u8; 14 + ihl + 8];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        frame[14] = 0x40 | (ihl / 4) as u8;
        frame[14 + 9] = protocol;
        frame[14 + 12..14 + 16].copy_from_slice(&src);
        frame[14 + ihl..14 + ihl + 2].copy_from_slice(&ports[0].to_be_bytes());
        frame[14 + ihl + 2..14 + ihl + 4].copy_from_slice(&ports[1].to_be_bytes());
        frame
    }

    fn ipv6_frame(next_header: u8, src: [u8; 16], ports: [u16; 2]) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 40 + 8];
        frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        frame[14] = 0x60;
        frame[14 + 6] = next_header;
        frame[14 + 8..14 + 24].copy_from_slice(&src);
        frame[54..56].copy_from_slice(&ports[0].to_be_bytes());
        frame[56..58].copy_from_slice(&ports[1].to_be_bytes());
        frame
    }

    /// Checks that the program picks the worker `steer` names, on a TAP and on a TUN.
    fn assert_same_owner(frame: &[u8], workers: usize) {
        let Steer::To(owner) = steer(&frame[14..], 0, workers) else {
            panic!("steer did not name an owner for {frame:?}");
        };
        let tap = run(&program(14, workers), frame);
        assert_eq!(tap as usize, owner.0, "TAP, {workers} workers");
        let tun = run(&program(0, workers), &frame[14..]);
        assert_eq!(tun as usize, owner.0, "TUN, {workers} workers");
    }

    proptest! {
        #[test]
        fn tcp4_goes_to_owner(
            src in any::<[u8; 4]>(),
            ports in any::<[u16; 2]>(),
            options in 0usize..=10,
            workers in 2usize..=8,
        ) {
            assert_same_owner(&ipv4_frame(6, options, src, ports), workers);
        }

        #[test]
        fn udp4_goes_to_port_owner(
            src in any::<[u8; 4]>(),
            ports in any::<[u16; 2]>(),
            workers in 2usize..=8,
        ) {
            assert_same_owner(&ipv4_frame(17, 0, src, ports), workers);
        }

        #[test]
        fn tcp6_and_udp6_go_to_owner(
            src in any::<[u8; 16]>(),
            ports in any::<[u16; 2]>(),
            udp in any::<bool>(),
            workers in 2usize..=8,
        ) {
            assert_same_owner(&ipv6_frame(if udp { 17 } else { 6 }, src, ports), workers);
        }
    }

    #[test]
    fn other_frames_go_to_queue_zero() {
        let program = program(14, 4);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(run(&program, &arp), 0);
        let icmp = ipv4_frame(1, 0, [10, 77, 0, 1], [1, 2]);
        assert_eq!(run(&program, &icmp), 0);
        let mut fragment = ipv4_frame(6, 0, [10, 77, 0, 1], [1, 2]);
        fragment[14 + 7] = 0x10;
        assert_eq!(run(&program, &fragment), 0);
        let extension = ipv6_frame(0, [1; 16], [1, 2]);
        assert_eq!(run(&program, &extension), 0);
        assert_eq!(
            run(&program, &ipv4_frame(6, 0, [1, 2, 3, 4], [5, 6])[..30]),
            0
        );
    }
}
