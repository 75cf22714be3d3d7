use luoshu_train::LrSchedule;

#[test]
fn lr_schedule_warms_up_then_decays_to_the_floor() {
    let s = LrSchedule {
        peak_lr: 1e-3,
        min_lr: 1e-4,
        warmup_steps: 10,
        total_steps: 110,
    };
    assert!((s.lr_at(0) - 1e-4).abs() < 1e-12);
    assert!((s.lr_at(9) - 1e-3).abs() < 1e-12);
    assert!((s.lr_at(10) - 1e-3).abs() < 1e-12);
    assert!(
        (s.lr_at(60) - 5.5e-4).abs() < 1e-12,
        "halfway is the midpoint"
    );
    assert!((s.lr_at(110) - 1e-4).abs() < 1e-12);
    assert!((s.lr_at(1000) - 1e-4).abs() < 1e-12);
    let decay: Vec<f64> = (10..=110).map(|t| s.lr_at(t)).collect();
    assert!(decay.windows(2).all(|w| w[1] <= w[0]));
    assert!(LrSchedule {
        min_lr: 1.0,
        ..s.clone()
    }
    .validate()
    .is_err());
}
