//! Transparent huge pages: the server turns them off for itself (`main.rs`:
//! while it serves, a huge-page fault as the heap grows stalls every call
//! in flight), except while it loads its contact records at start-up,
//! before it serves anything.

/// Runs `load` with transparent huge pages allowed, if this process had
/// them off, and turns them off again after (even if `load` panics). The
/// contact index of tens of millions of records is gigabytes of fresh
/// memory: in 2 MiB pages it takes a fault per 2 MiB instead of one per
/// 4 KiB (docs/performance.md). A failure to switch keeps the setting.
/// (Kernels before 5.0 apply the switch only to memory mapped after it:
/// there, what the load mapped stays eligible for huge pages.)
pub fn allowed_while<T>(load: impl FnOnce() -> T) -> T {
    let _restore = Allowed::begin();
    load()
}

/// Turns huge pages off again when dropped, if it turned them on.
struct Allowed {
    #[cfg(target_os = "linux")]
    were_off: bool,
}

impl Allowed {
    fn begin() -> Allowed {
        #[cfg(target_os = "linux")]
        {
            let were_off = rustix::thread::transparent_huge_pages_are_disabled().unwrap_or(false);
            let were_off =
                were_off && rustix::thread::disable_transparent_huge_pages(false).is_ok();
            Allowed { were_off }
        }
        #[cfg(not(target_os = "linux"))]
        Allowed {}
    }
}

impl Drop for Allowed {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if self.were_off {
            let _ = rustix::thread::disable_transparent_huge_pages(true);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn test_huge_pages_are_allowed_only_while_loading() {
        let before = rustix::thread::transparent_huge_pages_are_disabled().unwrap();
        rustix::thread::disable_transparent_huge_pages(true).unwrap();
        let during =
            allowed_while(|| rustix::thread::transparent_huge_pages_are_disabled().unwrap());
        assert!(!during);
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
        let unwound = std::panic::catch_unwind(|| allowed_while(|| panic!("load failed")));
        assert!(unwound.is_err());
        assert!(
            rustix::thread::transparent_huge_pages_are_disabled().unwrap(),
            "off again after a panic"
        );
        rustix::thread::disable_transparent_huge_pages(before).unwrap();
    }
}
