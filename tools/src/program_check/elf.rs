//! The few ELF facts the program check needs: whether a file names a dynamic loader
//! (PT_INTERP), and whether it was built by the Go toolchain, whose runtime makes socket system
//! calls itself instead of calling libc.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// The program header type of the loader path (PT_INTERP in the ELF specification).
pub(super) const PT_INTERP: u32 = 3;

/// The program header type of a note segment (PT_NOTE).
const PT_NOTE: u32 = 4;

/// The owner name of the notes the Go linker writes, padded to four bytes.
const GO_NOTE_NAME: &[u8] = b"Go\0\0";

/// The note type of the Go build ID (ELF_NOTE_GOBUILDID_TAG in Go's cmd/link).
const GO_NOTE_BUILD_ID: u32 = 4;

/// Sections that only the Go linker writes: the build information that `go version -m`
/// reads, the runtime's table of function addresses, and the build ID note.
const GO_SECTIONS: [&[u8]; 3] = [b".go.buildinfo", b".gopclntab", b".note.go.buildid"];

/// The largest note segment read while looking for Go's note; real ones are a few hundred
/// bytes.
const MAX_NOTE_SEGMENT: u64 = 64 * 1024;

/// The largest section name table read; a Go program's is about 400 bytes, and a file that
/// claims more is not searched.
const MAX_SECTION_NAMES: u64 = 1024 * 1024;

/// The most section headers searched for the name table; ELF allows up to 2^32.
const MAX_SECTIONS: u64 = 1 << 16;

/// The section index that means "the real value is in section 0" (SHN_XINDEX).
const SHN_XINDEX: u16 = 0xffff;

/// The fields of an ELF file header needed to walk the program and section headers.
#[derive(Debug)]
pub(super) struct ElfHeader {
    is_64: bool,
    big_endian: bool,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
    shoff: u64,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

/// One program header's type and file extent.
struct Segment {
    kind: u32,
    offset: u64,
    size: u64,
}

impl ElfHeader {
    /// Parses the file header at the start of `head`, or returns `None` when it is not ELF.
    pub(super) fn parse(head: &[u8]) -> Option<ElfHeader> {
        if head.len() < 64 || &head[..4] != b"\x7fELF" {
            return None;
        }
        let is_64 = match head[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big_endian = match head[5] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let u16_at = |at: usize| read_u16(&head[at..at + 2], big_endian);
        let u32_at = |at: usize| u64::from(read_u32(&head[at..at + 4], big_endian));
        let header = if is_64 {
            ElfHeader {
                is_64,
                big_endian,
                phoff: read_u64(&head[32..40], big_endian),
                phentsize: u16_at(54),
                phnum: u16_at(56),
                shoff: read_u64(&head[40..48], big_endian),
                shentsize: u16_at(58),
                shnum: u16_at(60),
                shstrndx: u16_at(62),
            }
        } else {
            ElfHeader {
                is_64,
                big_endian,
                phoff: u32_at(28),
                phentsize: u16_at(42),
                phnum: u16_at(44),
                shoff: u32_at(32),
                shentsize: u16_at(46),
                shnum: u16_at(48),
                shstrndx: u16_at(50),
            }
        };
        Some(header)
    }

    /// Returns whether a program header of type PT_INTERP exists.
    pub(super) fn has_interp(&self, file: &mut File) -> io::Result<bool> {
        Ok(self
            .segments(file)?
            .iter()
            .any(|segment| segment.kind == PT_INTERP))
    }

    /// Returns whether the Go linker built the file: a note segment holds Go's build ID note,
    /// or a section carries a name only Go uses. Tools that strip section headers leave the
    /// note, and Go builds without a build ID keep the sections.
    pub(super) fn is_go(&self, file: &mut File) -> io::Result<bool> {
        for segment in self.segments(file)? {
            if segment.kind == PT_NOTE && segment.size <= MAX_NOTE_SEGMENT {
                let bytes = read_at(file, segment.offset, segment.size as usize)?;
                if has_go_note(&bytes, self.big_endian) {
                    return Ok(true);
                }
            }
        }
        let names = self.section_names(file)?;
        Ok(GO_SECTIONS
            .iter()
            .any(|wanted| names.split(|&b| b == 0).any(|name| name == *wanted)))
    }

    /// Reads every program header.
    fn segments(&self, file: &mut File) -> io::Result<Vec<Segment>> {
        let min_entry = if self.is_64 { 56 } else { 32 };
        if usize::from(self.phentsize) < min_entry {
            return Ok(Vec::new());
        }
        let mut segments = Vec::with_capacity(usize::from(self.phnum));
        for index in 0..u64::from(self.phnum) {
            let at = self.phoff + index * u64::from(self.phentsize);
            let entry = read_at(file, at, usize::from(self.phentsize))?;
            let kind = read_u32(&entry[..4], self.big_endian);
            let (offset, size) = if self.is_64 {
                (self.u64_at(&entry, 8), self.u64_at(&entry, 32))
            } else {
                (self.u32_at(&entry, 4), self.u32_at(&entry, 16))
            };
            segments.push(Segment { kind, offset, size });
        }
        Ok(segments)
    }

    /// Returns the section name table (the section `e_shstrndx` names), or nothing when the
    /// file has no section headers or the table is missing or too large.
    fn section_names(&self, file: &mut File) -> io::Result<Vec<u8>> {
        let min_entry = if self.is_64 { 64 } else { 40 };
        if self.shoff == 0 || usize::from(self.shentsize) < min_entry {
            return Ok(Vec::new());
        }
        // With many sections the real count and table index live in section 0.
        let first = self.section(file, 0)?;
        let count = match self.shnum {
            0 => first.size,
            count => u64::from(count),
        };
        let index = match self.shstrndx {
            SHN_XINDEX => u64::from(first.link),
            index => u64::from(index),
        };
        if index == 0 || index >= count.min(MAX_SECTIONS) {
            return Ok(Vec::new());
        }
        let table = self.section(file, index)?;
        if table.size > MAX_SECTION_NAMES {
            return Ok(Vec::new());
        }
        read_at(file, table.offset, table.size as usize)
    }

    /// Reads the section header at `index`.
    fn section(&self, file: &mut File, index: u64) -> io::Result<Section> {
        let at = self.shoff + index * u64::from(self.shentsize);
        let entry = read_at(file, at, usize::from(self.shentsize))?;
        let section = if self.is_64 {
            Section {
                offset: self.u64_at(&entry, 24),
                size: self.u64_at(&entry, 32),
                link: read_u32(&entry[40..44], self.big_endian),
            }
        } else {
            Section {
                offset: self.u32_at(&entry, 16),
                size: self.u32_at(&entry, 20),
                link: read_u32(&entry[24..28], self.big_endian),
            }
        };
        Ok(section)
    }

    fn u64_at(&self, bytes: &[u8], at: usize) -> u64 {
        read_u64(&bytes[at..at + 8], self.big_endian)
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> u64 {
        u64::from(read_u32(&bytes[at..at + 4], self.big_endian))
    }
}

/// One section header's file extent and link field.
struct Section {
    offset: u64,
    size: u64,
    link: u32,
}

/// Returns whether the notes in `bytes` (one note segment) include Go's build ID note.
fn has_go_note(bytes: &[u8], big_endian: bool) -> bool {
    let padded = |len: usize| len.div_ceil(4) * 4;
    let mut rest = bytes;
    while rest.len() >= 12 {
        let name_len = read_u32(&rest[..4], big_endian) as usize;
        let desc_len = read_u32(&rest[4..8], big_endian) as usize;
        let kind = read_u32(&rest[8..12], big_endian);
        let name_end = 12usize.saturating_add(padded(name_len));
        if name_end > rest.len() {
            return false;
        }
        let name = &rest[12..12 + name_len];
        if kind == GO_NOTE_BUILD_ID && padded_name(name) == GO_NOTE_NAME {
            return true;
        }
        let next = name_end.saturating_add(padded(desc_len));
        rest = rest.get(next..).unwrap_or_default();
    }
    false
}

/// Returns a note name padded with NULs to four bytes, as Go writes it ("Go\0\0", namesz 4);
/// a name of namesz 3 ("Go\0") compares equal too.
fn padded_name(name: &[u8]) -> &[u8] {
    match name {
        b"Go\0" => GO_NOTE_NAME,
        other => other,
    }
}

/// Reads `len` bytes at `offset`.
fn read_at(file: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn read_u16(bytes: &[u8], big_endian: bool) -> u16 {
    let bytes = bytes.try_into().expect("two bytes");
    if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    }
}

fn read_u32(bytes: &[u8], big_endian: bool) -> u32 {
    let bytes = bytes.try_into().expect("four bytes");
    if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    }
}

fn read_u64(bytes: &[u8], big_endian: bool) -> u64 {
    let bytes = bytes.try_into().expect("eight bytes");
    if big_endian {
        u64::from_be_bytes(bytes)
    } else {
        u64::from_le_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// Builds an ELF file of either class and byte order with the given segments (type and
    /// contents) and named sections (name and contents).
    struct ElfBuilder {
        is_64: bool,
        big_endian: bool,
        segments: Vec<(u32, Vec<u8>)>,
        sections: Vec<(&'static str, Vec<u8>)>,
    }

    impl ElfBuilder {
        fn new(is_64: bool, big_endian: bool) -> ElfBuilder {
            ElfBuilder {
                is_64,
                big_endian,
                segments: Vec::new(),
                sections: Vec::new(),
            }
        }

        fn segment(mut self, kind: u32, contents: Vec<u8>) -> ElfBuilder {
            self.segments.push((kind, contents));
            self
        }

        fn section(mut self, name: &'static str, contents: Vec<u8>) -> ElfBuilder {
            self.sections.push((name, contents));
            self
        }

        /// Writes `value` as `width` bytes at `at` in the builder's byte order.
        fn put(&self, bytes: &mut [u8], at: usize, width: usize, value: u64) {
            let all = if self.big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let field = if self.big_endian {
                &all[8 - width..]
            } else {
                &all[..width]
            };
            bytes[at..at + width].copy_from_slice(field);
        }

        fn build(&self) -> Vec<u8> {
            let (word, phentsize, shentsize) = if self.is_64 { (8, 56, 64) } else { (4, 32, 40) };
            let mut file = vec![0u8; 64];
            file[..4].copy_from_slice(b"\x7fELF");
            file[4] = if self.is_64 { 2 } else { 1 };
            file[5] = if self.big_endian { 2 } else { 1 };

            // Program headers, then each segment's contents.
            let phoff = file.len();
            file.resize(phoff + phentsize * self.segments.len(), 0);
            for (index, (kind, contents)) in self.segments.iter().enumerate() {
                let entry = phoff + index * phentsize;
                let offset = file.len() as u64;
                file.extend(contents);
                self.put(&mut file, entry, 4, u64::from(*kind));
                if self.is_64 {
                    self.put(&mut file, entry + 8, 8, offset);
                    self.put(&mut file, entry + 32, 8, contents.len() as u64);
                } else {
                    self.put(&mut file, entry + 4, 4, offset);
                    self.put(&mut file, entry + 16, 4, contents.len() as u64);
                }
            }

            // Section contents, the name table last, then the section headers with the null
            // section first.
            let mut names = vec![0u8];
            let mut placed = Vec::new();
            for (name, contents) in &self.sections {
                placed.push((names.len() as u64, file.len() as u64, contents.len() as u64));
                names.extend(name.as_bytes());
                names.push(0);
                file.extend(contents);
            }
            placed.push((0, file.len() as u64, names.len() as u64));
            file.extend(&names);
            let shoff = file.len();
            file.resize(shoff + shentsize * (placed.len() + 1), 0);
            for (index, (name, offset, size)) in placed.iter().enumerate() {
                let entry = shoff + (index + 1) * shentsize;
                self.put(&mut file, entry, 4, *name);
                let (offset_at, size_at) = if self.is_64 { (24, 32) } else { (16, 20) };
                self.put(&mut file, entry + offset_at, word, *offset);
                self.put(&mut file, entry + size_at, word, *size);
            }

            let header = if self.is_64 {
                [
                    (32, 8, phoff),
                    (40, 8, shoff),
                    (54, 2, phentsize),
                    (58, 2, shentsize),
                ]
            } else {
                [
                    (28, 4, phoff),
                    (32, 4, shoff),
                    (42, 2, phentsize),
                    (46, 2, shentsize),
                ]
            };
            for (at, width, value) in header {
                self.put(&mut file, at, width, value as u64);
            }
            let (phnum_at, shnum_at, shstrndx_at) = if self.is_64 {
                (56, 60, 62)
            } else {
                (44, 48, 50)
            };
            self.put(&mut file, phnum_at, 2, self.segments.len() as u64);
            self.put(&mut file, shnum_at, 2, placed.len() as u64 + 1);
            self.put(&mut file, shstrndx_at, 2, placed.len() as u64);
            file
        }
    }

    /// Returns one note with `name` (NUL-terminated in the file), `kind` and an 8-byte
    /// description, in the given byte order.
    fn note(name: &str, kind: u32, big_endian: bool) -> Vec<u8> {
        let word = |value: u32| {
            if big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            }
        };
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        let mut bytes = Vec::new();
        bytes.extend(word(name.len() as u32));
        bytes.extend(word(8));
        bytes.extend(word(kind));
        bytes.extend(&name);
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        bytes.extend(b"buildid!");
        bytes
    }

    fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
        let file_name = format!("netcon-elf-{}-{name}", std::process::id());
        let path = std::env::temp_dir().join(file_name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Parses the file at `path` and returns (has PT_INTERP, built by Go).
    fn inspect(path: &Path) -> (bool, bool) {
        let mut file = File::open(path).unwrap();
        let mut head = [0u8; 64];
        file.read_exact(&mut head).unwrap();
        let header = ElfHeader::parse(&head).expect("an ELF header");
        (
            header.has_interp(&mut file).unwrap(),
            header.is_go(&mut file).unwrap(),
        )
    }

    fn inspect_bytes(name: &str, bytes: &[u8]) -> (bool, bool) {
        let path = scratch_file(name, bytes);
        let found = inspect(&path);
        std::fs::remove_file(&path).unwrap();
        found
    }

    #[test]
    fn go_note_found_without_sections() {
        let gnu = note("GNU", 3, false);
        let mut notes = gnu.clone();
        notes.extend(note("Go", GO_NOTE_BUILD_ID, false));
        let bytes = ElfBuilder::new(true, false)
            .segment(PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())
            .segment(PT_NOTE, notes)
            .build();
        assert_eq!(inspect_bytes("go-note", &bytes), (true, true));
    }

    #[test]
    fn go_sections_found_without_note() {
        for section in [".go.buildinfo", ".gopclntab", ".note.go.buildid"] {
            let bytes = ElfBuilder::new(true, false)
                .segment(PT_INTERP, b"/lib/ld.so\0".to_vec())
                .section(".text", vec![0x90; 16])
                .section(section, vec![0; 32])
                .build();
            assert_eq!(
                inspect_bytes("go-section", &bytes),
                (true, true),
                "{section}"
            );
        }
    }

    #[test]
    fn c_program_is_not_go() {
        let bytes = ElfBuilder::new(true, false)
            .segment(PT_INTERP, b"/lib/ld.so\0".to_vec())
            .segment(PT_NOTE, note("GNU", 3, false))
            .section(".text", vec![0x90; 16])
            .section(".go.buildinfo.not", vec![0; 8])
            .section(".rodata", b"Go\0\0.gopclntab".to_vec())
            .build();
        assert_eq!(inspect_bytes("c-program", &bytes), (true, false));
    }

    #[test]
    fn go_note_of_other_type_ignored() {
        // Go also writes notes of other types (package list, ABI hash) in non-executables.
        let bytes = ElfBuilder::new(true, false)
            .segment(PT_NOTE, note("Go", 1, false))
            .build();
        assert_eq!(inspect_bytes("go-other-note", &bytes), (false, false));
    }

    #[test]
    fn big_endian_32_bit_go_found() {
        let by_section = ElfBuilder::new(false, true)
            .segment(PT_INTERP, b"/lib/ld.so.1\0".to_vec())
            .section(".gopclntab", vec![0; 8])
            .build();
        assert_eq!(inspect_bytes("be32-section", &by_section), (true, true));
        let by_note = ElfBuilder::new(false, true)
            .segment(PT_NOTE, note("Go", GO_NOTE_BUILD_ID, true))
            .build();
        assert_eq!(inspect_bytes("be32-note", &by_note), (false, true));
    }

    #[test]
    fn broken_section_table_is_not_go() {
        let mut bytes = ElfBuilder::new(true, false)
            .segment(PT_INTERP, b"/lib/ld.so\0".to_vec())
            .section(".gopclntab", vec![0; 8])
            .build();
        // e_shstrndx past the last section.
        bytes[62..64].copy_from_slice(&500u16.to_le_bytes());
        assert_eq!(inspect_bytes("bad-shstrndx", &bytes), (true, false));
        // A note whose name length runs past the segment.
        let mut truncated = note("Go", GO_NOTE_BUILD_ID, false);
        truncated[..4].copy_from_slice(&1000u32.to_le_bytes());
        let bytes = ElfBuilder::new(true, false)
            .segment(PT_NOTE, truncated)
            .build();
        assert_eq!(inspect_bytes("bad-note", &bytes), (false, false));
    }

    #[test]
    fn go_programs_rejected() {
        use crate::program_check::{Rejection, check_program};
        let dynamic = ElfBuilder::new(true, false)
            .segment(PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())
            .section(".go.buildinfo", vec![0; 32])
            .build();
        let path = scratch_file("go-dynamic", &dynamic);
        let result = check_program(&path);
        std::fs::remove_file(&path).unwrap();
        let rejection = Rejection::GoProgram { path };
        assert_eq!(result, Err(rejection.clone()));
        assert!(rejection.allowed_isolated());
        assert!(rejection.preload_loads());
        assert!(rejection.to_string().contains("--isolate"), "{rejection}");

        // A statically linked Go program is rejected as static: the preload never loads.
        let fully_static = ElfBuilder::new(true, false)
            .section(".go.buildinfo", vec![0; 32])
            .build();
        let path = scratch_file("go-static", &fully_static);
        let result = check_program(&path);
        std::fs::remove_file(&path).unwrap();
        let rejection = Rejection::StaticElf { path };
        assert_eq!(result, Err(rejection.clone()));
        assert!(rejection.allowed_isolated());
        assert!(!rejection.preload_loads());
    }

    #[test]
    fn system_c_program_is_not_go() {
        assert_eq!(inspect(Path::new("/bin/true")), (true, false));
    }
}
