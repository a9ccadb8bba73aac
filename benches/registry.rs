//! National-scale registry benchmark: generates a clustered US DNC full list
//! (FTC format, random area codes, random active 10,000-number blocks, ~60%
//! of each block registered, shuffled), then measures the real
//! `dialgate registry import`, `sort -u` on the same file, the snapshot
//! size and load time, resident bytes per number, and lookup latency.
//!
//! Run: `cargo bench --bench registry` (env `BENCH_SIZES`, millions of
//! numbers, default `10,100`).

use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use dialgate::number::NumberKey;
use dialgate::registry::file;
use dialgate::registry::snapshot::BlockLookup;

/// US area codes (all in the built-in NANP table, so the import accepts them).
const NPAS: &[u16] = &[
    212, 315, 347, 516, 518, 585, 607, 631, 646, 716, 718, 845, 914, 917, 929, 201, 551, 609, 732,
    848, 856, 862, 908, 973, 215, 267, 412, 484, 570, 610, 717, 724, 814, 339, 413, 508, 617, 774,
    781, 857, 978, 203, 475, 860, 404, 470, 678, 706, 770, 912, 202, 276, 434, 540, 571, 703, 757,
    804, 240, 301, 410, 443, 252, 336, 704, 828, 910, 919, 980, 803, 843, 864, 216, 234, 330, 419,
    440, 513, 614, 740, 937, 231, 248, 269, 313, 517, 586, 616, 734, 810, 989, 239, 305, 321, 352,
    386, 407, 561, 727, 754, 772, 786, 813, 863, 904, 941, 954, 217, 224, 309, 312, 331, 618, 630,
    708, 773, 815, 847, 210, 214, 254, 281, 325, 361, 409, 469, 512, 682, 713, 737, 806, 817, 830,
    832, 903, 936, 940, 956, 972, 979, 218, 320, 507, 612, 651, 763, 952, 262, 414, 608, 715, 920,
    314, 417, 573, 636, 660, 816, 225, 318, 337, 504, 985, 205, 251, 256, 334, 319, 515, 563, 641,
    712, 405, 580, 918, 479, 501, 870, 228, 601, 662, 303, 719, 720, 970, 385, 435, 801, 505, 575,
    406, 307, 480, 520, 602, 623, 209, 213, 310, 323, 408, 415, 424, 510, 530, 559, 562, 619, 626,
    650, 661, 707, 714, 760, 805, 818, 831, 858, 909, 916, 925, 949, 951, 206, 253, 360, 425, 509,
    702, 775, 503, 971, 808,
];

#[path = "common/rng.rs"]
mod rng;

use rng::Rng;

/// 10-digit NANP numbers as integers, clustered in blocks, shuffled.
fn generate(count: usize, rng: &mut Rng) -> Vec<u64> {
    let mut numbers = Vec::with_capacity(count + 10_000);
    let mut used = std::collections::HashSet::new();
    while numbers.len() < count {
        let npa = NPAS[rng.below(NPAS.len() as u64) as usize] as u64;
        let nxx = 200 + rng.below(800);
        if !used.insert((npa, nxx)) {
            continue;
        }
        for line in 0..10_000u64 {
            if rng.below(10) < 6 {
                numbers.push(npa * 10_000_000 + nxx * 10_000 + line);
            }
        }
    }
    numbers.truncate(count);
    for i in (1..numbers.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        numbers.swap(i, j);
    }
    numbers
}

/// Counts heap bytes in use, to measure what a loaded snapshot occupies.
struct Counting;

static IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        IN_USE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap_bytes() -> usize {
    IN_USE.load(std::sync::atomic::Ordering::Relaxed)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
        .collect();
    let bin = env!("CARGO_BIN_EXE_dialgate");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    println!(
        "{:>6} {:>10} {:>12} {:>10} {:>10} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "M nums",
        "import s",
        "numbers/s",
        "sort -u s",
        "ratio",
        "snap MB",
        "load s",
        "B/num",
        "hit ns",
        "near ns",
        "far ns"
    );
    for millions in sizes {
        let count = millions * 1_000_000;
        let dir = tempfile::tempdir().unwrap();
        let numbers = generate(count, &mut rng);
        let path = dir.path().join("dnc.txt");
        {
            let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
            for n in &numbers {
                writeln!(out, "{},{:07}", n / 10_000_000, n % 10_000_000).unwrap();
            }
            out.flush().unwrap();
        }
        let config = dir.path().join("dialgate.toml");
        std::fs::write(
            &config,
            "[server]\ndata_dir = \"data\"\n[[registry]]\nid = \"us-dnc\"\nkind = \"blocklist\"\ncountry = \"US\"\n",
        )
        .unwrap();
        // The page cache is warm for both commands: they read the same file.
        let started = Instant::now();
        let status = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args([
                "registry",
                "import",
                "--registry",
                "us-dnc",
                "--format",
                "ftc",
                "--covers",
                "+1",
                "--file",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let import_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let status = Command::new("sort")
            .args(["-u", "-o", "/dev/null"])
            .arg(&path)
            .env("LC_ALL", "C")
            .status()
            .unwrap();
        assert!(status.success());
        let sort_s = started.elapsed().as_secs_f64();

        let snapshots = dir.path().join("data").join("registries");
        let snap_size = std::fs::metadata(file::snapshot_path(&snapshots, "us-dnc"))
            .unwrap()
            .len();
        let heap_before = heap_bytes();
        let started = Instant::now();
        let snapshot = file::read(&snapshots, "us-dnc").unwrap().unwrap();
        let load_s = started.elapsed().as_secs_f64();
        let resident = heap_bytes().saturating_sub(heap_before);
        assert_eq!(
            snapshot.len(),
            count as u64,
            "exact: every generated number is in the snapshot"
        );

        // Lookups: hits, near misses (a member plus 1..20, not a member), far misses.
        let probes = 2_000_000usize;
        let mut keys = |make: &mut dyn FnMut(&mut Rng) -> Option<u64>| -> Vec<(String, NumberKey)> {
            let mut out = Vec::with_capacity(probes);
            while out.len() < probes {
                if let Some(n) = make(&mut rng) {
                    let digits = format!("1{n}");
                    let key = NumberKey::from_digits(&digits).unwrap();
                    out.push((digits, key));
                }
            }
            out
        };
        let hits = keys(&mut |r| Some(numbers[r.below(numbers.len() as u64) as usize]));
        let near = keys(&mut |r| {
            let n = numbers[r.below(numbers.len() as u64) as usize] + 1 + r.below(20);
            let key = NumberKey::from_digits(&format!("1{n}")).unwrap();
            (!snapshot.batches[""][0].numbers.contains(key.0)).then_some(n)
        });
        let far = keys(&mut |r| {
            let n = 2_000_000_000 + r.below(8_000_000_000);
            let key = NumberKey::from_digits(&format!("1{n}")).unwrap();
            (!snapshot.batches[""][0].numbers.contains(key.0)).then_some(n)
        });
        let measure = |set: &[(String, NumberKey)], expected: BlockLookup| -> f64 {
            let started = Instant::now();
            let mut matched = 0usize;
            for (digits, key) in set {
                if snapshot.block_lookup(digits, *key) == expected {
                    matched += 1;
                }
            }
            let ns = started.elapsed().as_nanos() as f64 / set.len() as f64;
            assert_eq!(matched, set.len(), "never a false clear, never a false hit");
            ns
        };
        let hit_ns = measure(&hits, BlockLookup::Listed);
        let near_ns = measure(&near, BlockLookup::NotListed);
        let far_ns = measure(&far, BlockLookup::NotListed);
        println!(
            "{:>6} {:>10.2} {:>12.0} {:>10.2} {:>10.2} {:>10.1} {:>9.3} {:>8.2} {:>9.0} {:>9.0} {:>9.0}",
            millions,
            import_s,
            count as f64 / import_s,
            sort_s,
            import_s / sort_s,
            snap_size as f64 / 1e6,
            load_s,
            resident as f64 / count as f64,
            hit_ns,
            near_ns,
            far_ns
        );
    }
}
