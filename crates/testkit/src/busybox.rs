//! A statically linked busybox for test images built `FROM scratch`, where a dynamically linked
//! one cannot start (`exec /bin/busybox: no such file or directory`).

/// Where Debian's `busybox-static` (and its dynamically linked `busybox`) install the binary.
const CANDIDATES: [&str; 2] = ["/usr/bin/busybox", "/bin/busybox"];

/// The bytes of a statically linked busybox. Fails the test with the package to install when
/// there is none (Debian ships a dynamically linked `busybox` by default).
pub fn static_busybox() -> Vec<u8> {
    let mut seen = Vec::new();
    for path in CANDIDATES {
        if let Ok(bytes) = std::fs::read(path) {
            if is_static_elf(&bytes) {
                return bytes;
            }
            seen.push(path);
        }
    }
    panic!(
        "these tests need a statically linked busybox (Debian package busybox-static; \
         scripts/test.sh installs it); found only dynamically linked ones: {seen:?}"
    );
}

/// Whether `bytes` is a 64-bit little-endian ELF executable without a program interpreter
/// (`PT_INTERP`), i.e. one that runs with no dynamic loader and no libraries.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if !bytes.starts_with(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = phoff as usize + i * usize::from(phentsize);
        u32_at(at).is_some_and(|kind| kind != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamically_linked_programs_are_told_apart() {
        // This test binary is dynamically linked (it names a program interpreter).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(&me[..0x30]));

        // A minimal header with one program header: a loadable segment only, then an
        // interpreter.
        let elf = |kind: u32| {
            let mut b = vec![0u8; 64 + 56];
            b[..6].copy_from_slice(b"\x7fELF\x02\x01");
            b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
            b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
            b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
            b[64..68].copy_from_slice(&kind.to_le_bytes());
            b
        };
        assert!(is_static_elf(&elf(1)));
        assert!(!is_static_elf(&elf(3)));
    }
}
