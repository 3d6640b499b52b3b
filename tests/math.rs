//! The vectorisable f32 exp against f64 `exp`, over the whole f32 range.

use rcmcl::engine::math::exp_f32;

/// Distance from `got` to `exact` in units of the last place of the f32 nearest `exact`.
fn ulps(got: f32, exact: f64) -> f64 {
    let nearest = exact as f32;
    let ulp = if nearest == 0.0 || nearest.is_subnormal() {
        f32::from_bits(1) as f64
    } else {
        (f32::from_bits(nearest.to_bits() + 1) as f64 - nearest as f64).abs()
    };
    (got as f64 - exact).abs() / ulp
}

#[test]
fn exp_f32_is_within_one_ulp_everywhere() {
    let mut worst = (0.0f64, 0.0f32);
    let mut check = |x: f32| {
        let exact = (x as f64).exp();
        let got = exp_f32(x);
        if exact > f32::MAX as f64 {
            assert_eq!(got, f32::INFINITY, "exp({x}) overflows");
            return;
        }
        let e = ulps(got, exact);
        if e > worst.0 {
            worst = (e, x);
        }
    };
    // Every 257th bit pattern of the negative and positive inputs whose exp is representable,
    // plus a dense walk near 0 where the polynomial alone does the work.
    let mut bits = (-104.0f32).to_bits();
    while bits > 0x8000_0000 {
        check(f32::from_bits(bits));
        bits -= 257;
    }
    let mut bits = 0u32;
    while f32::from_bits(bits) < 89.0 {
        check(f32::from_bits(bits));
        bits += 257;
    }
    for i in -20_000..20_000 {
        check(i as f32 * 1e-4);
    }
    assert!(
        worst.0 <= 1.0,
        "worst error {:.2} ulp at x = {:e}",
        worst.0,
        worst.1
    );
}

#[test]
fn exp_f32_special_values() {
    assert!(exp_f32(f32::NAN).is_nan());
    assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
    assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_f32(0.0), 1.0);
    assert_eq!(exp_f32(-0.0), 1.0);
    assert_eq!(exp_f32(1000.0), f32::INFINITY);
    assert_eq!(exp_f32(-1000.0), 0.0);
    // The subnormal range: exp(-100) = 3.7e-44 is a subnormal f32.
    assert!((exp_f32(-100.0) as f64 - (-100f64).exp()).abs() <= f32::from_bits(1) as f64);
}
