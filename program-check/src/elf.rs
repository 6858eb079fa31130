//! The few ELF facts the check needs: whether a file names a dynamic loader (PT_INTERP), and
//! whether the Go toolchain built it, whose runtime makes socket system calls itself instead
//! of calling libc. Everything is read into fixed buffers, in pieces, so the check allocates
//! nothing.

use core::ffi::CStr;

use crate::file::{Errno, ExecFile};

/// The program header type of the loader path (PT_INTERP in the ELF specification).
pub(crate) const PT_INTERP: u32 = 3;

/// The program header type of a note segment (PT_NOTE).
pub(crate) const PT_NOTE: u32 = 4;

/// The owner name of the notes the Go linker writes, padded to four bytes.
const GO_NOTE_NAME: &[u8] = b"Go\0\0";

/// The note type of the Go build ID (ELF_NOTE_GOBUILDID_TAG in Go's cmd/link).
pub(crate) const GO_NOTE_BUILD_ID: u32 = 4;

/// Sections that only the Go linker writes: the build information that `go version -m`
/// reads, the runtime's table of function addresses, and the build ID note.
const GO_SECTIONS: [&[u8]; 3] = [b".go.buildinfo", b".gopclntab", b".note.go.buildid"];

/// The length of the longest name in [`GO_SECTIONS`].
const LONGEST_GO_SECTION: usize = 16;

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

/// The bytes of the section name table read at a time.
const NAMES_CHUNK: usize = 512;

/// The fields of an ELF file header needed to walk the program and section headers.
#[derive(Debug)]
pub(crate) struct ElfHeader {
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

/// One section header's file extent and link field.
struct Section {
    offset: u64,
    size: u64,
    link: u32,
}

impl ElfHeader {
    /// Parses the file header at the start of `head`, or returns `None` when it is not ELF.
    pub(crate) fn parse(head: &[u8]) -> Option<ElfHeader> {
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
    pub(crate) fn has_interp(&self, file: &ExecFile) -> Result<bool, Errno> {
        for index in 0..self.segment_count() {
            if self.segment(file, index)?.kind == PT_INTERP {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads the path the PT_INTERP header names into `out` and returns it. Returns `None`
    /// when the file has no PT_INTERP header, or its path is empty, longer than `out` or not
    /// NUL-terminated.
    pub(crate) fn interpreter<'b>(
        &self,
        file: &ExecFile,
        out: &'b mut [u8],
    ) -> Result<Option<&'b CStr>, Errno> {
        for index in 0..self.segment_count() {
            let segment = self.segment(file, index)?;
            if segment.kind != PT_INTERP {
                continue;
            }
            if segment.size == 0 || segment.size > out.len() as u64 {
                return Ok(None);
            }
            let len = segment.size as usize;
            file.read_exact_at(segment.offset, &mut out[..len])?;
            let out: &'b [u8] = out;
            return Ok(CStr::from_bytes_until_nul(&out[..len]).ok());
        }
        Ok(None)
    }

    /// Returns whether the Go linker built the file: a note segment holds Go's build ID note,
    /// or a section carries a name only Go uses. Tools that strip section headers leave the
    /// note, and Go builds without a build ID keep the sections.
    pub(crate) fn is_go(&self, file: &ExecFile) -> Result<bool, Errno> {
        for index in 0..self.segment_count() {
            let segment = self.segment(file, index)?;
            if segment.kind == PT_NOTE
                && segment.size <= MAX_NOTE_SEGMENT
                && self.has_go_note(file, &segment)?
            {
                return Ok(true);
            }
        }
        self.has_go_section(file)
    }

    /// Returns the number of program headers to read: none when an entry is too short to
    /// hold the fields read.
    fn segment_count(&self) -> u64 {
        let min_entry = if self.is_64 { 56 } else { 32 };
        match usize::from(self.phentsize) < min_entry {
            true => 0,
            false => u64::from(self.phnum),
        }
    }

    /// Reads the program header at `index`.
    fn segment(&self, file: &ExecFile, index: u64) -> Result<Segment, Errno> {
        let at = self.phoff + index * u64::from(self.phentsize);
        let mut entry = [0u8; 56];
        let len = if self.is_64 { 56 } else { 32 };
        file.read_exact_at(at, &mut entry[..len])?;
        let kind = read_u32(&entry[..4], self.big_endian);
        let (offset, size) = if self.is_64 {
            (self.u64_at(&entry, 8), self.u64_at(&entry, 32))
        } else {
            (self.u32_at(&entry, 4), self.u32_at(&entry, 16))
        };
        Ok(Segment { kind, offset, size })
    }

    /// Returns whether the notes of one note segment include Go's build ID note.
    fn has_go_note(&self, file: &ExecFile, segment: &Segment) -> Result<bool, Errno> {
        let padded = |len: u64| len.div_ceil(4) * 4;
        let mut at = 0u64;
        while segment.size.saturating_sub(at) >= 12 {
            let mut header = [0u8; 12];
            file.read_exact_at(segment.offset + at, &mut header)?;
            let name_len = u64::from(read_u32(&header[..4], self.big_endian));
            let desc_len = u64::from(read_u32(&header[4..8], self.big_endian));
            let kind = read_u32(&header[8..12], self.big_endian);
            let name_end = 12u64.saturating_add(padded(name_len));
            if name_end > segment.size - at {
                return Ok(false);
            }
            // Go writes the name "Go\0\0" (namesz 4); a namesz of 3 ("Go\0") counts too.
            if kind == GO_NOTE_BUILD_ID && (name_len == 3 || name_len == 4) {
                let mut name = [0u8; 4];
                let name = &mut name[..name_len as usize];
                file.read_exact_at(segment.offset + at + 12, name)?;
                if GO_NOTE_NAME.starts_with(name) {
                    return Ok(true);
                }
            }
            at = at.saturating_add(name_end.saturating_add(padded(desc_len)));
        }
        Ok(false)
    }

    /// Returns whether the section name table (the section `e_shstrndx` names) holds a name
    /// only Go uses. A file without section headers, or whose table is missing or too large,
    /// holds none.
    fn has_go_section(&self, file: &ExecFile) -> Result<bool, Errno> {
        let min_entry = if self.is_64 { 64 } else { 40 };
        if self.shoff == 0 || usize::from(self.shentsize) < min_entry {
            return Ok(false);
        }
        // With many sections the real count and table index live in section 0.
        let count = match self.shnum {
            0 => self.section(file, 0)?.size,
            count => u64::from(count),
        };
        let index = match self.shstrndx {
            SHN_XINDEX => u64::from(self.section(file, 0)?.link),
            index => u64::from(index),
        };
        if index == 0 || index >= count.min(MAX_SECTIONS) {
            return Ok(false);
        }
        let table = self.section(file, index)?;
        if table.size > MAX_SECTION_NAMES {
            return Ok(false);
        }

        let mut names = NameMatcher::new();
        let mut chunk = [0u8; NAMES_CHUNK];
        let mut at = 0;
        while at < table.size && !names.found {
            let len = (table.size - at).min(NAMES_CHUNK as u64) as usize;
            file.read_exact_at(table.offset + at, &mut chunk[..len])?;
            names.feed(&chunk[..len]);
            at += len as u64;
        }
        names.end();
        Ok(names.found)
    }

    /// Reads the section header at `index`.
    fn section(&self, file: &ExecFile, index: u64) -> Result<Section, Errno> {
        let at = self.shoff + index * u64::from(self.shentsize);
        let mut entry = [0u8; 64];
        let len = if self.is_64 { 64 } else { 40 };
        file.read_exact_at(at, &mut entry[..len])?;
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

/// Looks for the names of [`GO_SECTIONS`] in a string table fed in pieces: names are
/// separated by NUL bytes, and one may span two pieces.
struct NameMatcher {
    name: [u8; LONGEST_GO_SECTION],
    len: usize,
    /// The current name is longer than any Go section name.
    too_long: bool,
    found: bool,
}

impl NameMatcher {
    fn new() -> NameMatcher {
        NameMatcher {
            name: [0; LONGEST_GO_SECTION],
            len: 0,
            too_long: false,
            found: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == 0 {
                self.end();
            } else if self.len < self.name.len() {
                self.name[self.len] = byte;
                self.len += 1;
            } else {
                self.too_long = true;
            }
        }
    }

    /// Ends the current name, which also happens where the table ends without a NUL.
    fn end(&mut self) {
        let name = &self.name[..self.len];
        if !self.too_long && GO_SECTIONS.contains(&name) {
            self.found = true;
        }
        self.len = 0;
        self.too_long = false;
    }
}

fn read_u16(bytes: &[u8], big_endian: bool) -> u16 {
    let bytes = [bytes[0], bytes[1]];
    if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    }
}

fn read_u32(bytes: &[u8], big_endian: bool) -> u32 {
    let bytes = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    }
}

fn read_u64(bytes: &[u8], big_endian: bool) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    if big_endian {
        u64::from_be_bytes(word)
    } else {
        u64::from_le_bytes(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{ElfBuilder, note, scratch_file};
    use std::boxed::Box;
    use std::path::Path;
    use std::vec;

    /// Parses the file at `path` and returns (has PT_INTERP, built by Go).
    fn inspect(path: &Path) -> (bool, bool) {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let file = ExecFile::open_at(libc::AT_FDCWD, &c_path, false).unwrap();
        let header = ElfHeader::parse(file.head()).expect("an ELF header");
        (
            header.has_interp(&file).unwrap(),
            header.is_go(&file).unwrap(),
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
    fn go_note_found_past_head() {
        // Go programs keep their note near the end of the first page, past the bytes read at
        // open.
        let mut notes = note("GNU", 3, false);
        notes.resize(3000, 0);
        notes.extend(note("Go", GO_NOTE_BUILD_ID, false));
        let bytes = ElfBuilder::new(true, false).segment(PT_NOTE, notes).build();
        assert_eq!(inspect_bytes("go-note-far", &bytes), (false, true));
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
    fn section_name_across_chunks() {
        // A name table longer than one read, with the Go name cut by the chunk boundary.
        let padding = "x".repeat(NAMES_CHUNK - 8);
        let padding: &'static str = Box::leak(padding.into_boxed_str());
        let bytes = ElfBuilder::new(true, false)
            .section(padding, vec![0; 4])
            .section(".gopclntab", vec![0; 8])
            .build();
        assert_eq!(inspect_bytes("go-section-split", &bytes), (false, true));
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
    fn short_header_is_not_elf() {
        assert!(ElfHeader::parse(b"\x7fELF\x02\x01").is_none());
    }

    #[test]
    fn interpreter_path_read() {
        let bytes = ElfBuilder::new(true, false)
            .segment(PT_INTERP, b"/lib/ld.so.1\0".to_vec())
            .build();
        let path = scratch_file("interp", &bytes);
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let file = ExecFile::open_at(libc::AT_FDCWD, &c_path, false).unwrap();
        let header = ElfHeader::parse(file.head()).expect("an ELF header");
        let mut out = [0u8; 64];
        let found = header.interpreter(&file, &mut out).unwrap();
        let mut short = [0u8; 4];
        let too_long = header.interpreter(&file, &mut short).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(found, Some(c"/lib/ld.so.1"));
        assert_eq!(too_long, None);
    }

    #[test]
    fn system_c_program_is_not_go() {
        assert_eq!(inspect(Path::new("/bin/true")), (true, false));
    }

    #[test]
    fn name_matcher_needs_whole_names() {
        let mut names = NameMatcher::new();
        names.feed(b"\0.text\0x.gopclntab\0.gopclntab.more\0");
        names.end();
        assert!(!names.found);
        names.feed(b".gopcl");
        names.feed(b"ntab");
        names.end();
        assert!(names.found);
    }
}
