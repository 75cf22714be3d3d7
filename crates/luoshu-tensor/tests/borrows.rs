//! Storage access is checked at run time: two claims of one storage conflict exactly when
//! their byte ranges overlap and at least one writes, and a conflict is an error (or, for
//! `to_f64_vec`, a wait), never a data race.

use luoshu_tensor::{BorrowMode, Borrows, DType, Error, Storage, Tensor};
use proptest::prelude::*;
use std::ops::Range;
use std::sync::Arc;

fn claim<'a>(
    borrows: &Borrows<'a>,
    storage: &'a Storage,
    range: Range<usize>,
    write: bool,
) -> luoshu_tensor::Result<()> {
    if write {
        borrows.write::<u8>("second", storage, DType::U8, range)?;
    } else {
        borrows.read::<u8>("second", storage, DType::U8, range)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn claims_conflict_iff_ranges_overlap_and_one_writes(
        (a_start, a_len, b_start, b_len) in (0usize..64, 0usize..32, 0usize..64, 0usize..32),
        a_writes in any::<bool>(),
        b_writes in any::<bool>(),
    ) {
        let storage = Storage::zeroed(96);
        let (a, b) = (a_start..a_start + a_len, b_start..b_start + b_len);
        let first = Borrows::new();
        claim(&first, &storage, a.clone(), a_writes).unwrap();
        let second = Borrows::new();
        let result = claim(&second, &storage, b.clone(), b_writes);
        let overlap = a.start < b.end && b.start < a.end;
        let conflict = overlap && (a_writes || b_writes);
        prop_assert_eq!(result.is_err(), conflict, "{:?} then {:?}: {:?}", a, b, result);
        if let Err(err) = result {
            let mode = |w| if w { BorrowMode::Write } else { BorrowMode::Read };
            prop_assert_eq!(err, Error::BorrowConflict {
                op: "second",
                mode: mode(b_writes),
                bytes: b.clone(),
                held_by: "second",
                held_mode: mode(a_writes),
                held_bytes: a.clone(),
            });
        }
        // Releasing the first scope frees its range for anyone.
        drop(first);
        drop(second);
        let third = Borrows::new();
        prop_assert!(claim(&third, &storage, b, b_writes).is_ok());
    }
}

/// `t.to_vec()` fails because `writer` holds a write claim of `bytes`.
fn assert_to_vec_conflicts_with_a_writer(t: &Tensor, writer: &str, bytes: Range<usize>) {
    let err = t.to_vec::<f32>().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::BorrowConflict {
                op: "to_vec",
                mode: BorrowMode::Read,
                held_by,
                held_mode: BorrowMode::Write,
                held_bytes,
                ..
            } if *held_by == writer && *held_bytes == bytes
        ),
        "{err}"
    );
    let expected = format!("while {writer} writes bytes {}..{}", bytes.start, bytes.end);
    assert!(err.to_string().contains(&expected), "{err}");
}

#[test]
fn to_vec_while_a_kernel_writes_is_an_error() {
    let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], [4]).unwrap();
    let kernel = Borrows::new();
    let out: &mut [f32] = kernel
        .write("kernel", t.storage(), DType::F32, 1..3)
        .unwrap();
    out[0] = 7.0;
    assert_to_vec_conflicts_with_a_writer(&t, "kernel", 4..12);
    // A view of elements the kernel does not write can still be read.
    assert_eq!(t.narrow(0, 3, 1).unwrap().to_vec::<f32>().unwrap(), [4.0]);
    drop(kernel);
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 7.0, 3.0, 4.0]);
}

#[test]
fn a_foreign_claim_conflicts_while_held_and_is_released_on_drop() {
    let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], [4]).unwrap();
    // MPI receiving into elements 1..3 (bytes 4..12).
    let receive = Storage::claim_for_foreign(t.storage(), "mpi", 4..12, BorrowMode::Write).unwrap();
    assert_eq!(receive.len(), 8);
    let ptr = receive.as_mut_ptr().unwrap();
    assert_eq!(ptr.cast_const(), receive.as_ptr());
    assert_eq!(receive.as_ptr() as usize, t.storage().base_address() + 4);
    assert_to_vec_conflicts_with_a_writer(&t, "mpi", 4..12);
    // Elements outside the claimed bytes are still free.
    assert_eq!(t.narrow(0, 3, 1).unwrap().to_vec::<f32>().unwrap(), [4.0]);
    let second = Storage::claim_for_foreign(t.storage(), "other", 8..9, BorrowMode::Read);
    assert!(matches!(
        second,
        Err(Error::BorrowConflict { held_by: "mpi", .. })
    ));
    drop(receive);
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0]);

    // MPI sending the whole tensor: readers proceed, writers fail, and the pointer is
    // read-only.
    let send = Storage::claim_for_foreign(t.storage(), "mpi", 0..16, BorrowMode::Read).unwrap();
    assert!(send.as_mut_ptr().is_none());
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0]);
    let kernel = Borrows::new();
    let write = kernel.write::<f32>("kernel", t.storage(), DType::F32, 3..4);
    assert!(matches!(
        write,
        Err(Error::BorrowConflict {
            op: "kernel",
            held_by: "mpi",
            ..
        })
    ));
    drop(kernel);
    // A leaked claim (an abandoned MPI request) keeps its bytes claimed.
    std::mem::forget(send);
    let kernel = Borrows::new();
    let write = kernel.write::<f32>("kernel", t.storage(), DType::F32, 0..1);
    assert!(matches!(
        write,
        Err(Error::BorrowConflict { held_by: "mpi", .. })
    ));
}

#[test]
fn a_foreign_claim_outside_the_storage_is_an_error() {
    let storage = Arc::new(Storage::zeroed(16));
    let claim = Storage::claim_for_foreign(&storage, "mpi", 8..24, BorrowMode::Read);
    assert!(matches!(
        claim,
        Err(Error::ViewOutOfStorage {
            op: "mpi",
            needed: 24,
            available: 16
        })
    ));
    // A failed claim holds nothing.
    let borrows = Borrows::new();
    assert!(borrows
        .write::<u8>("kernel", &storage, DType::U8, 0..16)
        .is_ok());
}

#[test]
fn to_f64_vec_waits_for_the_writer_and_sees_its_result() {
    let t = Tensor::from_slice(&[0.0f32; 4], [4]).unwrap();
    let kernel = Borrows::new();
    let out: &mut [f32] = kernel
        .write("kernel", t.storage(), DType::F32, 0..4)
        .unwrap();
    let reader = {
        let t = t.clone();
        std::thread::spawn(move || t.to_f64_vec())
    };
    // The reader was started while the write claim was held, so it can only read after the
    // claim is released: it must see every value written below.
    out.copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
    drop(kernel);
    assert_eq!(reader.join().unwrap(), [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn disjoint_writes_of_one_storage_proceed_from_several_threads() {
    let storage = Storage::zeroed(4 * 1024);
    std::thread::scope(|scope| {
        for chunk in 0..4u8 {
            let storage = &storage;
            scope.spawn(move || {
                let borrows = Borrows::new();
                let start = usize::from(chunk) * 1024;
                let dst: &mut [u8] = borrows
                    .write("fill", storage, DType::U8, start..start + 1024)
                    .unwrap();
                dst.fill(chunk + 1);
            });
        }
    });
    let borrows = Borrows::new();
    let all: &[u8] = borrows.read("check", &storage, DType::U8, 0..4096).unwrap();
    for (chunk, bytes) in all.chunks(1024).enumerate() {
        assert!(bytes.iter().all(|&b| usize::from(b) == chunk + 1));
    }
}

#[test]
fn regions_outside_the_storage_or_of_the_wrong_type_are_errors() {
    let storage = Storage::zeroed(16);
    let borrows = Borrows::new();
    assert!(matches!(
        borrows.read::<f32>("r", &storage, DType::F32, 2..5),
        Err(Error::ViewOutOfStorage {
            needed: 5,
            available: 4,
            ..
        })
    ));
    assert!(matches!(
        borrows.write::<f32>("w", &storage, DType::F64, 0..1),
        Err(Error::DTypeMismatch { .. })
    ));
}
