use super::*;

#[test]
fn beta_quantiles_match_scipy() {
    // scipy.stats.beta.ppf(p, 0.6, 0.6)
    for (p, want) in [
        (0.5, 0.5),
        (0.9, 0.960_415_594_411_219_2),
        (0.1, 0.039_584_405_588_780_85),
    ] {
        let got = beta_ppf(p, 0.6, 0.6);
        assert!((got - want).abs() < 1e-9, "ppf({p}) = {got}, want {want}");
    }
}

#[test]
fn config_ignores_unknown_fields_and_fills_defaults() {
    let cfg = SchedulerConfig::from_json(
        r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "skip_prk_steps": true, "steps_offset": 1,
            "set_alpha_to_one": false, "clip_sample": false}"#,
    )
    .unwrap();
    assert_eq!(cfg, SchedulerConfig::stable_diffusion());
    assert!(SchedulerConfig::from_json("{\"beta_start\": \"x\"}").is_err());
}

#[test]
fn sigma_and_t_round_trip() {
    let lv = NoiseLevels::from_config(&SchedulerConfig::stable_diffusion()).unwrap();
    for t in [0.0, 0.25, 1.0, 17.5, 500.0, 998.9, 999.0] {
        let back = lv.sigma_to_t(lv.t_to_sigma(t));
        assert!((back - t).abs() < 1e-6, "t {t} -> {back}");
    }
    assert_eq!(lv.sigma_to_t(1e-6), 0.0);
    assert_eq!(lv.sigma_to_t(1e6), 999.0);
}
