//! Micro-benchmark of the check the preload makes before every exec. The programs are a
//! dynamically linked C program (/bin/sh), a shell script whose interpreter is /bin/sh, and a
//! Go program (/usr/bin/hey, whose note lies past the first bytes read), all in the page
//! cache.

mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use criterion::{Criterion, criterion_group, criterion_main};
use netcon_program_check::{Launch, Scratch, check_path};
use support::criterion_config;

fn program_check(c: &mut Criterion) {
    let script = tempfile::NamedTempFile::new().expect("cannot create a script");
    std::fs::write(script.path(), "#!/bin/sh\ntrue\n").expect("cannot write the script");
    let script_path = CString::new(script.path().as_os_str().as_bytes()).unwrap();
    let cases = [
        ("dynamic_elf", c"/bin/sh".to_owned()),
        ("script", script_path),
        ("go_program", c"/usr/bin/hey".to_owned()),
    ];
    let mut group = c.benchmark_group("program_check");
    for (name, path) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut scratch = Scratch::new();
                let launch = Launch::without_arguments(None);
                let verdict = check_path(path, &launch, &mut scratch).is_ok();
                std::hint::black_box(verdict)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = program_check
}
criterion_main!(benches);
