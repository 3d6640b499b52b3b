//! The action classes: one joint-angle program per class, a function of the action's progress
//! `s` in [0, 1] (0 before it starts, 1 after it ends) returning a body `Pose`.
//!
//! Classes come in confusable groups on purpose: the same motion with the left or the right
//! limb; wave / clap / reach / push (arms in front); drink / phone call / touch head (hand to
//! head); sit down / squat / pick up / bow (bending); sit down / stand up (the same motion
//! reversed in time); and whole-body actions (jump, walk, turn, side step, jumping jacks).

use super::body::{Arm, Leg, Pose, LEFT, RIGHT};
use crate::data::geom::smoothstep;

/// One action class's program. Sided variants carry the limb that moves (`LEFT` or `RIGHT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Wave(usize),
    Reach(usize),
    RaiseHand(usize),
    Punch(usize),
    Throw(usize),
    Kick(usize),
    Drink,
    PhoneCall,
    Clap,
    CrossArms,
    Cheer,
    Push,
    ArmCircles,
    JumpingJacks,
    SitDown,
    StandUp,
    Squat,
    PickUp,
    Bow,
    Jump,
    WalkInPlace,
    TurnAround,
    SideStep,
    TouchHead,
    Shrug,
    NodHead,
}

use Action::*;

/// Every class, indexed by label: (name, program).
pub const CLASSES: [(&str, Action); 32] = [
    ("wave right hand", Wave(RIGHT)),
    ("wave left hand", Wave(LEFT)),
    ("reach out right hand", Reach(RIGHT)),
    ("reach out left hand", Reach(LEFT)),
    ("raise right hand", RaiseHand(RIGHT)),
    ("raise left hand", RaiseHand(LEFT)),
    ("punch right hand", Punch(RIGHT)),
    ("punch left hand", Punch(LEFT)),
    ("throw right hand", Throw(RIGHT)),
    ("throw left hand", Throw(LEFT)),
    ("kick right leg", Kick(RIGHT)),
    ("kick left leg", Kick(LEFT)),
    ("drink water", Drink),
    ("phone call", PhoneCall),
    ("clap", Clap),
    ("cross arms", CrossArms),
    ("cheer up", Cheer),
    ("push", Push),
    ("arm circles", ArmCircles),
    ("jumping jacks", JumpingJacks),
    ("sit down", SitDown),
    ("stand up", StandUp),
    ("squat", Squat),
    ("pick up", PickUp),
    ("bow", Bow),
    ("jump", Jump),
    ("walk in place", WalkInPlace),
    ("turn around", TurnAround),
    ("side step", SideStep),
    ("touch head", TouchHead),
    ("shrug", Shrug),
    ("nod head", NodHead),
];

/// The class that plays the mirror image of `label`, if there is one (left vs right limb).
pub fn mirror_class(label: usize) -> Option<usize> {
    let (_, action) = CLASSES[label];
    let mirrored = match action {
        Wave(s) => Wave(1 - s),
        Reach(s) => Reach(1 - s),
        RaiseHand(s) => RaiseHand(1 - s),
        Punch(s) => Punch(1 - s),
        Throw(s) => Throw(1 - s),
        Kick(s) => Kick(1 - s),
        _ => return None,
    };
    CLASSES.iter().position(|&(_, a)| a == mirrored)
}

/// Smooth interpolation through keyframes `(s, value)` (sorted by `s`); flat outside them.
fn kf(s: f32, keys: &[(f32, f32)]) -> f32 {
    let first = keys[0];
    if s <= first.0 {
        return first.1;
    }
    for w in keys.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        if s <= s1 {
            return v0 + (v1 - v0) * smoothstep(s0, s1, s);
        }
    }
    keys[keys.len() - 1].1
}

/// Up, hold, down: the envelope of most "do it and come back" actions.
fn hold(s: f32, up: f32, down: f32) -> f32 {
    kf(s, &[(0.0, 0.0), (up, 1.0), (down, 1.0), (1.0, 0.0)])
}

/// A bump of width `w` centred at `c`.
fn pulse(s: f32, c: f32, w: f32) -> f32 {
    (-((s - c) / w).powi(2)).exp()
}

/// `n` full cycles over the action.
fn cycle(s: f32, n: f32) -> f32 {
    (std::f32::consts::TAU * n * s).sin()
}

/// +1 for the left side, -1 for the right: the sign of sideways trunk and head motion.
fn sign(side: usize) -> f32 {
    if side == LEFT {
        1.0
    } else {
        -1.0
    }
}

impl Action {
    /// Whether the feet stay where they are while the body bends (crouching, bowing). Stepping
    /// actions only keep the lower foot on the floor.
    pub fn plants_feet(self) -> bool {
        !matches!(
            self,
            Kick(_) | JumpingJacks | WalkInPlace | TurnAround | SideStep
        )
    }

    /// The pose at progress `s` in [0, 1].
    pub fn pose(self, s: f32) -> Pose {
        let s = s.clamp(0.0, 1.0);
        let mut p = Pose::rest();
        let rest_arm = p.arms[LEFT];
        match self {
            Wave(side) => {
                let e = hold(s, 0.25, 0.8);
                let w = kf(s, &[(0.2, 0.0), (0.3, 1.0), (0.7, 1.0), (0.8, 0.0)]) * cycle(s, 3.0);
                p.arms[side] = Arm {
                    clav: 5.0 * e,
                    flex: 15.0 * e,
                    abd: 6.0 + 69.0 * e,
                    twist: 90.0 * e,
                    elbow: 8.0 + 77.0 * e + 25.0 * w,
                    ..rest_arm
                };
            }
            Reach(side) => {
                let e = kf(s, &[(0.05, 0.0), (0.45, 1.0), (0.6, 1.0), (0.95, 0.0)]);
                p.arms[side] = Arm {
                    clav: 5.0 * e,
                    flex: 85.0 * e,
                    abd: 6.0 - 4.0 * e,
                    horiz: -12.0 * e,
                    elbow: 8.0 - 4.0 * e,
                    wrist: -10.0 * e,
                    ..rest_arm
                };
                p.trunk_flex = 12.0 * e;
                p.trunk_twist = -12.0 * e * sign(side);
                p.head_flex = 8.0 * e;
            }
            RaiseHand(side) => {
                let e = hold(s, 0.3, 0.75);
                p.arms[side] = Arm {
                    flex: 160.0 * e,
                    abd: 6.0 + 10.0 * e,
                    elbow: 8.0 + 7.0 * e,
                    ..rest_arm
                };
                p.trunk_side = -4.0 * e * sign(side);
            }
            Punch(side) => {
                let g = kf(s, &[(0.05, 0.0), (0.25, 1.0), (0.8, 1.0), (0.95, 0.0)]);
                let hit = pulse(s, 0.42, 0.05) + pulse(s, 0.62, 0.05);
                let guard = Arm {
                    flex: 50.0 * g,
                    abd: 6.0 + 10.0 * g,
                    horiz: -20.0 * g,
                    elbow: 8.0 + 112.0 * g,
                    ..rest_arm
                };
                p.arms = [guard; 2];
                p.arms[side] = Arm {
                    flex: guard.flex + 40.0 * hit,
                    horiz: guard.horiz + 10.0 * hit,
                    elbow: (guard.elbow - 115.0 * hit).max(3.0),
                    ..guard
                };
                p.trunk_twist = -18.0 * hit * sign(side);
            }
            Throw(side) => {
                let k = |v: [f32; 5]| {
                    kf(
                        s,
                        &[
                            (0.1, v[0]),
                            (0.35, v[1]),
                            (0.5, v[2]),
                            (0.62, v[3]),
                            (0.85, v[4]),
                        ],
                    )
                };
                p.arms[side] = Arm {
                    flex: k([0.0, 150.0, 150.0, 60.0, 0.0]),
                    abd: k([6.0, 35.0, 30.0, 10.0, 6.0]),
                    twist: k([0.0, -70.0, -70.0, 0.0, 0.0]),
                    elbow: k([8.0, 110.0, 100.0, 10.0, 8.0]),
                    ..rest_arm
                };
                p.arms[1 - side].flex = k([0.0, 40.0, 20.0, 0.0, 0.0]);
                p.trunk_twist = k([0.0, 25.0, 20.0, -25.0, 0.0]) * sign(side);
                p.trunk_flex = k([0.0, -8.0, -5.0, 20.0, 0.0]);
            }
            Kick(side) => {
                let k = |v: [f32; 5]| {
                    kf(
                        s,
                        &[
                            (0.15, v[0]),
                            (0.35, v[1]),
                            (0.5, v[2]),
                            (0.62, v[3]),
                            (0.8, v[4]),
                        ],
                    )
                };
                p.legs[side] = Leg {
                    flex: k([0.0, 50.0, 80.0, 35.0, 0.0]),
                    knee: k([0.0, 90.0, 10.0, 50.0, 0.0]),
                    ankle: k([0.0, -20.0, -30.0, -10.0, 0.0]),
                    abd: 2.0,
                };
                let balance = k([0.0, 1.0, 1.0, 1.0, 0.0]);
                for arm in p.arms.iter_mut() {
                    arm.abd = 6.0 + 20.0 * balance;
                }
                p.trunk_flex = k([0.0, -5.0, -12.0, -5.0, 0.0]);
            }
            Drink => {
                let e = kf(s, &[(0.1, 0.0), (0.35, 1.0), (0.7, 1.0), (0.9, 0.0)]);
                let sip = kf(s, &[(0.4, 0.0), (0.5, 1.0), (0.6, 1.0), (0.68, 0.0)]);
                p.arms[RIGHT] = Arm {
                    flex: 40.0 * e + 10.0 * sip,
                    abd: 6.0 + 4.0 * e,
                    horiz: -25.0 * e,
                    elbow: 8.0 + 127.0 * e,
                    wrist: 15.0 * e,
                    ..rest_arm
                };
                p.head_flex = -15.0 * sip;
            }
            PhoneCall => {
                let e = kf(s, &[(0.1, 0.0), (0.3, 1.0), (0.85, 1.0), (0.97, 0.0)]);
                p.arms[RIGHT] = Arm {
                    flex: 20.0 * e,
                    abd: 6.0 + 49.0 * e,
                    horiz: -5.0 * e,
                    twist: 40.0 * e,
                    elbow: 8.0 + 142.0 * e,
                    wrist: 10.0 * e,
                    ..rest_arm
                };
                p.head_side = -8.0 * e;
                p.head_yaw = 8.0 * e * cycle(s, 1.5);
            }
            Clap => {
                let e = hold(s, 0.2, 0.85);
                let inner = kf(s, &[(0.2, 0.0), (0.28, 1.0), (0.78, 1.0), (0.85, 0.0)]);
                // 1 apart, 0 together; apart outside the clapping window.
                let apart = 1.0 - inner * (0.5 - 0.5 * cycle(s + 0.125 / 4.0, 4.0));
                let arm = Arm {
                    flex: 45.0 * e,
                    abd: 6.0 - 6.0 * e,
                    horiz: e * (-21.0 + 26.0 * apart),
                    elbow: 8.0 + 57.0 * e,
                    ..rest_arm
                };
                p.arms = [arm; 2];
            }
            CrossArms => {
                let e = hold(s, 0.3, 0.8);
                for (side, flex) in [(LEFT, 55.0), (RIGHT, 45.0)] {
                    p.arms[side] = Arm {
                        flex: flex * e,
                        abd: 6.0 + 14.0 * e,
                        horiz: -60.0 * e,
                        twist: -20.0 * e,
                        elbow: 8.0 + 112.0 * e,
                        ..rest_arm
                    };
                }
            }
            Cheer => {
                let e = hold(s, 0.25, 0.8);
                let inner = kf(s, &[(0.25, 0.0), (0.32, 1.0), (0.72, 1.0), (0.8, 0.0)]);
                let arm = Arm {
                    flex: 155.0 * e + 10.0 * inner * cycle(s, 3.0),
                    abd: 6.0 + 19.0 * e,
                    elbow: 8.0 + 10.0 * e,
                    ..rest_arm
                };
                p.arms = [arm; 2];
            }
            Push => {
                let k = |v: [f32; 5]| {
                    kf(
                        s,
                        &[
                            (0.1, v[0]),
                            (0.3, v[1]),
                            (0.55, v[2]),
                            (0.7, v[3]),
                            (0.9, v[4]),
                        ],
                    )
                };
                let arm = Arm {
                    flex: k([0.0, 50.0, 85.0, 85.0, 0.0]),
                    horiz: k([0.0, -12.0, -8.0, -8.0, 0.0]),
                    elbow: k([8.0, 115.0, 5.0, 5.0, 8.0]),
                    wrist: k([0.0, -10.0, -60.0, -60.0, 0.0]),
                    ..rest_arm
                };
                p.arms = [arm; 2];
                p.trunk_flex = k([0.0, 0.0, 12.0, 12.0, 0.0]);
            }
            ArmCircles => {
                let e = hold(s, 0.2, 0.8);
                let ph = std::f32::consts::TAU * 3.0 * s;
                let arm = Arm {
                    flex: 25.0 * ph.sin() * e,
                    abd: 6.0 + 79.0 * e + 22.0 * ph.cos() * e,
                    elbow: 8.0 - 6.0 * e,
                    ..rest_arm
                };
                p.arms = [arm; 2];
            }
            JumpingJacks => {
                let e = hold(s, 0.1, 0.9);
                let c = 0.5 - 0.5 * cycle(s + 0.25 / 3.0, 3.0);
                let arm = Arm {
                    abd: 6.0 + 150.0 * c * e,
                    elbow: 8.0 + 10.0 * c * e,
                    ..rest_arm
                };
                p.arms = [arm; 2];
                for leg in p.legs.iter_mut() {
                    leg.abd = 2.0 + 18.0 * c * e;
                }
                p.root.y = 0.07 * e * cycle(s, 3.0).abs();
            }
            SitDown => return sit(s),
            StandUp => return sit(1.0 - s),
            Squat => {
                let e = hold(s, 0.4, 0.6);
                let leg = Leg {
                    flex: 100.0 * e,
                    knee: 125.0 * e,
                    abd: 2.0 + 10.0 * e,
                    ankle: 0.0,
                };
                p.legs = [leg; 2];
                p.trunk_flex = 25.0 * e;
                let arm = Arm {
                    flex: 85.0 * e,
                    abd: 6.0 + 4.0 * e,
                    elbow: 8.0 - 5.0 * e,
                    ..rest_arm
                };
                p.arms = [arm; 2];
            }
            PickUp => {
                let e = kf(s, &[(0.1, 0.0), (0.4, 1.0), (0.55, 1.0), (0.85, 0.0)]);
                let grasp = pulse(s, 0.47, 0.05);
                p.trunk_flex = 70.0 * e;
                let leg = Leg {
                    flex: 25.0 * e,
                    knee: 40.0 * e,
                    ..p.legs[LEFT]
                };
                p.legs = [leg; 2];
                p.arms[RIGHT] = Arm {
                    flex: 85.0 * e,
                    horiz: -10.0 * e,
                    elbow: 8.0 + 7.0 * e,
                    wrist: 30.0 * grasp,
                    ..rest_arm
                };
                p.arms[LEFT] = Arm {
                    flex: 45.0 * e,
                    elbow: 8.0 + 30.0 * e,
                    ..rest_arm
                };
            }
            Bow => {
                let e = kf(s, &[(0.15, 0.0), (0.4, 1.0), (0.6, 1.0), (0.85, 0.0)]);
                p.trunk_flex = 45.0 * e;
                p.neck_flex = 10.0 * e;
                p.head_flex = 10.0 * e;
                for arm in p.arms.iter_mut() {
                    arm.flex = 45.0 * e;
                }
            }
            Jump => {
                let k = |v: [f32; 7]| {
                    kf(
                        s,
                        &[
                            (0.15, v[0]),
                            (0.32, v[1]),
                            (0.4, v[2]),
                            (0.48, v[3]),
                            (0.56, v[4]),
                            (0.64, v[5]),
                            (0.85, v[6]),
                        ],
                    )
                };
                let leg = Leg {
                    flex: k([0.0, 55.0, 0.0, 5.0, 0.0, 45.0, 0.0]),
                    knee: k([0.0, 80.0, 0.0, 10.0, 0.0, 65.0, 0.0]),
                    ankle: k([0.0, 0.0, -20.0, -30.0, 0.0, 0.0, 0.0]),
                    abd: 2.0,
                };
                p.legs = [leg; 2];
                p.trunk_flex = k([0.0, 30.0, 0.0, 0.0, 0.0, 25.0, 0.0]);
                let arm = Arm {
                    flex: k([0.0, -40.0, 150.0, 140.0, 60.0, 10.0, 0.0]),
                    ..rest_arm
                };
                p.arms = [arm; 2];
                p.root.y = kf(s, &[(0.4, 0.0), (0.48, 0.3), (0.56, 0.0)]);
            }
            WalkInPlace => {
                let e = hold(s, 0.1, 0.9);
                let step = cycle(s, 2.0) * e;
                for (side, lift) in [(LEFT, step.max(0.0)), (RIGHT, (-step).max(0.0))] {
                    p.legs[side].flex = 45.0 * lift;
                    p.legs[side].knee = 75.0 * lift;
                    p.arms[side].flex = -20.0 * step * sign(side);
                    p.arms[side].elbow = 8.0 + 20.0 * e;
                }
            }
            TurnAround => {
                p.yaw = 180.0 * kf(s, &[(0.1, 0.0), (0.9, 1.0)]);
                let e = hold(s, 0.1, 0.9);
                let step = cycle(s, 3.0) * e;
                for (side, lift) in [(LEFT, step.max(0.0)), (RIGHT, (-step).max(0.0))] {
                    p.legs[side].flex = 20.0 * lift;
                    p.legs[side].knee = 35.0 * lift;
                }
            }
            SideStep => {
                p.root.x = 0.35 * kf(s, &[(0.1, 0.0), (0.4, 1.0), (0.6, 1.0), (0.9, 0.0)]);
                // Lead with the left leg going left, with the right leg coming back.
                let left = 18.0 * pulse(s, 0.25, 0.07) + 10.0 * pulse(s, 0.88, 0.06);
                let right = 10.0 * pulse(s, 0.38, 0.06) + 18.0 * pulse(s, 0.75, 0.07);
                for (side, lift) in [(LEFT, left), (RIGHT, right)] {
                    p.legs[side].abd = 2.0 + lift;
                    p.legs[side].knee = lift;
                    p.arms[side].abd = 6.0 + 0.5 * lift;
                }
            }
            TouchHead => {
                let e = kf(s, &[(0.1, 0.0), (0.35, 1.0), (0.8, 1.0), (0.95, 0.0)]);
                let arm = Arm {
                    flex: 110.0 * e,
                    abd: 6.0 + 44.0 * e,
                    horiz: -10.0 * e,
                    twist: 40.0 * e,
                    elbow: 8.0 + 122.0 * e,
                    ..rest_arm
                };
                p.arms = [arm; 2];
                p.neck_flex = 15.0 * e;
            }
            Shrug => {
                let e = kf(s, &[(0.15, 0.0), (0.35, 1.0), (0.55, 1.0), (0.75, 0.0)]);
                let arm = Arm {
                    clav: 20.0 * e,
                    abd: 6.0 + 14.0 * e,
                    twist: -45.0 * e,
                    elbow: 8.0 + 82.0 * e,
                    wrist: -20.0 * e,
                    ..rest_arm
                };
                p.arms = [arm; 2];
            }
            NodHead => {
                let e = hold(s, 0.1, 0.9);
                p.head_flex = 22.0 * e * (0.5 - 0.5 * cycle(s + 0.25 / 3.0, 3.0));
                p.neck_flex = 5.0 * e;
            }
        }
        p
    }
}

/// Standing to seated at `s` = 1 (on a chair the renderer does not draw).
fn sit(s: f32) -> Pose {
    let mut p = Pose::rest();
    let r = kf(s, &[(0.1, 0.0), (0.75, 1.0)]);
    let b = (std::f32::consts::PI * r).sin();
    let leg = Leg {
        flex: 90.0 * r,
        knee: 90.0 * r,
        abd: 2.0 + 6.0 * r,
        ankle: 0.0,
    };
    p.legs = [leg; 2];
    p.trunk_flex = 10.0 * r + 30.0 * b;
    p.head_flex = -8.0 * b;
    for arm in p.arms.iter_mut() {
        arm.flex = 15.0 * b + 35.0 * r;
        arm.elbow = 8.0 + 37.0 * r;
        arm.abd = 6.0 + 4.0 * r;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_starts_and_ends_near_a_stance() {
        let rest = Pose::rest().values();
        for (name, action) in CLASSES {
            if matches!(action, SitDown | StandUp | TurnAround) {
                continue;
            }
            for s in [0.0, 1.0] {
                let p = action.pose(s).values();
                for (i, (a, b)) in p.iter().zip(&rest).enumerate() {
                    let d = (a - b).abs();
                    assert!(d < 1.0, "{name} at s={s}: scalar {i} is {d} from rest");
                }
            }
        }
    }

    #[test]
    fn mirror_classes_pair_up() {
        let mut pairs = 0;
        for label in 0..CLASSES.len() {
            if let Some(m) = mirror_class(label) {
                assert_eq!(mirror_class(m), Some(label));
                assert_ne!(m, label);
                pairs += 1;
            }
        }
        assert_eq!(pairs, 12);
        let names: std::collections::HashSet<_> = CLASSES.iter().map(|c| c.0).collect();
        assert_eq!(names.len(), CLASSES.len(), "class names are unique");
    }
}
