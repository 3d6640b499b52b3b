//! The degradation scenarios of paper 000's robustness tests, as loader degradations: modality
//! dropout (Table II) and feature corruption (Table III, Fig. 4).

use models::data::degrade::{Degradations, ModalityDrop, Sensor};
use models::data::loader::LoaderConfig;
use models::data::Modality;

/// One test condition: a name for tables and the degradations the test loader applies (None:
/// the clean data).
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub degrade: Option<Degradations>,
}

impl Scenario {
    /// The clean data, called "all" (all three sensors, no corruption).
    pub fn clean() -> Scenario {
        Scenario {
            name: "all".into(),
            degrade: None,
        }
    }

    /// Every sample loses the given sensors (their streams are zeros and flagged dropped).
    pub fn sensors_missing(name: &str, sensors: &[Sensor]) -> Scenario {
        let modalities = Modality::ALL
            .iter()
            .copied()
            .filter(|&m| sensors.contains(&Sensor::of(m)))
            .collect();
        Scenario {
            name: name.into(),
            degrade: Some(Degradations {
                modality_drop: Some(ModalityDrop::Fixed(modalities)),
                ..Degradations::default()
            }),
        }
    }

    /// Skeleton joint noise: Gaussian noise of `sigma` metres on every joint coordinate,
    /// named "SJN 0.05" etc.
    pub fn joint_noise(sigma: f32) -> Scenario {
        Scenario {
            name: format!("SJN {sigma:.2}"),
            degrade: Some(Degradations {
                joint_noise: Some(sigma),
                ..Degradations::default()
            }),
        }
    }

    /// Point-cloud sparsity: a `fraction` of each frame's points dropped, named "PCS 30%" etc.
    pub fn point_sparsity(fraction: f32) -> Scenario {
        Scenario {
            name: format!("PCS {:.0}%", 100.0 * fraction),
            degrade: Some(Degradations {
                point_sparsity: Some(fraction),
                ..Degradations::default()
            }),
        }
    }

    /// The sensors this scenario drops from every sample (empty for corruptions).
    pub fn missing(&self) -> Vec<Sensor> {
        let Some(Degradations {
            modality_drop: Some(ModalityDrop::Fixed(list)),
            ..
        }) = &self.degrade
        else {
            return Vec::new();
        };
        Sensor::ALL
            .into_iter()
            .filter(|&s| list.iter().any(|&m| Sensor::of(m) == s))
            .collect()
    }

    /// Whether the scenario means something on data with `sensors`: a dropout must remove at
    /// least one of them and leave at least one; joint noise needs the skeleton, sparsity the
    /// points.
    pub fn applies_to(&self, sensors: &[Sensor]) -> bool {
        let Some(g) = &self.degrade else {
            return true;
        };
        let missing = self.missing();
        if !missing.is_empty() {
            let left = sensors.iter().filter(|s| !missing.contains(s)).count();
            return left > 0 && left < sensors.len();
        }
        (g.joint_noise.is_none() || sensors.contains(&Sensor::Skeleton))
            && (g.point_sparsity.is_none() || sensors.contains(&Sensor::Points))
    }

    /// `base` (an evaluation loader's config) with this scenario's degradations.
    pub fn loader_config(&self, base: &LoaderConfig) -> LoaderConfig {
        LoaderConfig {
            degrade: self.degrade.clone(),
            ..base.clone()
        }
    }
}

/// Paper 000 Table II's columns: "all", "R missing" (RGB and depth dropped), "S missing",
/// "P missing", "R&P missing" (only the skeleton left).
pub fn dropout_scenarios() -> Vec<Scenario> {
    vec![
        Scenario::clean(),
        Scenario::sensors_missing("R missing", &[Sensor::Rgbd]),
        Scenario::sensors_missing("S missing", &[Sensor::Skeleton]),
        Scenario::sensors_missing("P missing", &[Sensor::Points]),
        Scenario::sensors_missing("R&P missing", &[Sensor::Rgbd, Sensor::Points]),
    ]
}

/// Paper 000 Table III's corruptions (with the sigma and sparsity its text lists): "SJN 0.05",
/// "SJN 0.10", "SJN 0.15" (skeleton joint noise, metres), "PCS 30%", "PCS 50%", "PCS 70%"
/// (point-cloud sparsity). The clean reference is `Scenario::clean()`.
pub fn corruption_scenarios() -> Vec<Scenario> {
    let mut v: Vec<Scenario> = [0.05, 0.10, 0.15]
        .into_iter()
        .map(Scenario::joint_noise)
        .collect();
    v.extend([0.3, 0.5, 0.7].into_iter().map(Scenario::point_sparsity));
    v
}

/// The scenarios of `scenarios` that apply to data with `sensors` (see
/// [`Scenario::applies_to`]): on NTU skeletons and depth, every one; on skeletons alone, none
/// of the dropouts.
pub fn applicable(scenarios: Vec<Scenario>, sensors: &[Sensor]) -> Vec<Scenario> {
    scenarios
        .into_iter()
        .filter(|s| s.applies_to(sensors))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenarios_are_the_papers() {
        let names: Vec<String> = dropout_scenarios().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["all", "R missing", "S missing", "P missing", "R&P missing"]
        );
        let names: Vec<String> = corruption_scenarios().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["SJN 0.05", "SJN 0.10", "SJN 0.15", "PCS 30%", "PCS 50%", "PCS 70%"]
        );
        let d = dropout_scenarios();
        assert_eq!(d[0].degrade, None);
        assert_eq!(
            d[1].degrade.as_ref().unwrap().modality_drop,
            Some(ModalityDrop::Fixed(vec![Modality::Depth, Modality::Rgb]))
        );
        assert_eq!(d[1].missing(), [Sensor::Rgbd]);
        assert_eq!(d[2].missing(), [Sensor::Skeleton]);
        assert_eq!(d[3].missing(), [Sensor::Points]);
        assert_eq!(d[4].missing(), [Sensor::Rgbd, Sensor::Points]);
        let Some(ModalityDrop::Fixed(s)) = &d[2].degrade.as_ref().unwrap().modality_drop else {
            panic!("a fixed drop")
        };
        assert!(s.contains(&Modality::Skeleton) && s.contains(&Modality::JointState));
        assert!(!s.contains(&Modality::Points) && !s.contains(&Modality::Rgb));
        let c = corruption_scenarios();
        assert_eq!(c[1].degrade.as_ref().unwrap().joint_noise, Some(0.10));
        assert_eq!(c[5].degrade.as_ref().unwrap().point_sparsity, Some(0.7));
        assert!(c.iter().all(|s| s.missing().is_empty()));
        for s in d.iter().chain(&c) {
            if let Some(g) = &s.degrade {
                g.check(&Modality::ALL).unwrap();
            }
        }
        let names = |v: Vec<Scenario>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        let all = || d.iter().chain(&c).cloned().collect::<Vec<_>>();
        assert_eq!(applicable(all(), &Sensor::ALL).len(), 11);
        assert_eq!(
            names(applicable(all(), &[Sensor::Skeleton, Sensor::Points])),
            [
                "all",
                "S missing",
                "P missing",
                "R&P missing",
                "SJN 0.05",
                "SJN 0.10",
                "SJN 0.15",
                "PCS 30%",
                "PCS 50%",
                "PCS 70%"
            ]
        );
        assert_eq!(
            names(applicable(all(), &[Sensor::Skeleton])),
            ["all", "SJN 0.05", "SJN 0.10", "SJN 0.15"]
        );
        assert_eq!(
            names(applicable(all(), &[Sensor::Rgbd, Sensor::Points])),
            [
                "all",
                "R missing",
                "P missing",
                "PCS 30%",
                "PCS 50%",
                "PCS 70%"
            ]
        );
        let base = LoaderConfig::new(&[Modality::Skeleton], 4);
        assert_eq!(c[0].loader_config(&base).degrade, c[0].degrade);
        assert_eq!(c[0].loader_config(&base).batch_size, 4);
    }
}
