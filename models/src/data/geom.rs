//! Small 3D vector and rotation helpers for the synthetic generator and the skeleton layouts.
//! f32 throughout: the arrays we emit are f32 and the scenes are metres-sized.

use std::ops::{Add, AddAssign, Mul, Neg, Sub};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct V3 {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

pub const fn v3(x: f32, y: f32, z: f32) -> V3 {
    V3 { x, y, z }
}

impl V3 {
    pub const ZERO: V3 = v3(0.0, 0.0, 0.0);

    pub fn dot(self, o: V3) -> f32 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    pub fn cross(self, o: V3) -> V3 {
        v3(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    pub fn norm(self) -> f32 {
        self.dot(self).sqrt()
    }

    /// The unit vector along `self`; zero stays zero rather than becoming NaN.
    pub fn normalized(self) -> V3 {
        let n = self.norm();
        if n > 1e-12 {
            self * (1.0 / n)
        } else {
            V3::ZERO
        }
    }

    pub fn lerp(self, o: V3, t: f32) -> V3 {
        self + (o - self) * t
    }

    pub fn to_array(self) -> [f32; 3] {
        [self.x, self.y, self.z]
    }

    pub fn from_slice(s: &[f32]) -> V3 {
        v3(s[0], s[1], s[2])
    }
}

impl Add for V3 {
    type Output = V3;
    fn add(self, o: V3) -> V3 {
        v3(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl AddAssign for V3 {
    fn add_assign(&mut self, o: V3) {
        *self = *self + o;
    }
}

impl Sub for V3 {
    type Output = V3;
    fn sub(self, o: V3) -> V3 {
        v3(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Neg for V3 {
    type Output = V3;
    fn neg(self) -> V3 {
        v3(-self.x, -self.y, -self.z)
    }
}

impl Mul<f32> for V3 {
    type Output = V3;
    fn mul(self, s: f32) -> V3 {
        v3(self.x * s, self.y * s, self.z * s)
    }
}

/// A 3x3 matrix, row-major. Used for rotations only.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct M3(pub [[f32; 3]; 3]);

impl M3 {
    pub const IDENTITY: M3 = M3([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);

    /// Rotation by `a` radians about x (right-handed).
    pub fn rot_x(a: f32) -> M3 {
        let (s, c) = a.sin_cos();
        M3([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    }

    pub fn rot_y(a: f32) -> M3 {
        let (s, c) = a.sin_cos();
        M3([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    }

    pub fn rot_z(a: f32) -> M3 {
        let (s, c) = a.sin_cos();
        M3([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    }

    /// The matrix whose rows are `r0`, `r1`, `r2`.
    pub fn from_rows(r0: V3, r1: V3, r2: V3) -> M3 {
        M3([r0.to_array(), r1.to_array(), r2.to_array()])
    }

    pub fn transpose(self) -> M3 {
        let m = self.0;
        M3([
            [m[0][0], m[1][0], m[2][0]],
            [m[0][1], m[1][1], m[2][1]],
            [m[0][2], m[1][2], m[2][2]],
        ])
    }
}

impl Mul<V3> for M3 {
    type Output = V3;
    fn mul(self, v: V3) -> V3 {
        let m = self.0;
        v3(
            m[0][0] * v.x + m[0][1] * v.y + m[0][2] * v.z,
            m[1][0] * v.x + m[1][1] * v.y + m[1][2] * v.z,
            m[2][0] * v.x + m[2][1] * v.y + m[2][2] * v.z,
        )
    }
}

impl Mul for M3 {
    type Output = M3;
    fn mul(self, o: M3) -> M3 {
        let mut r = [[0.0f32; 3]; 3];
        for (i, row) in r.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                *cell = (0..3).map(|k| self.0[i][k] * o.0[k][j]).sum();
            }
        }
        M3(r)
    }
}

/// Degrees to radians.
pub fn deg(d: f32) -> f32 {
    d.to_radians()
}

/// Hermite smoothstep of `x` between `a` and `b`, clamped to [0, 1].
pub fn smoothstep(a: f32, b: f32, x: f32) -> f32 {
    let t = ((x - a) / (b - a)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_are_right_handed() {
        let r = M3::rot_z(deg(90.0)) * v3(1.0, 0.0, 0.0);
        assert!((r - v3(0.0, 1.0, 0.0)).norm() < 1e-6);
        let r = M3::rot_x(deg(90.0)) * v3(0.0, 1.0, 0.0);
        assert!((r - v3(0.0, 0.0, 1.0)).norm() < 1e-6);
        let r = M3::rot_y(deg(90.0)) * v3(0.0, 0.0, 1.0);
        assert!((r - v3(1.0, 0.0, 0.0)).norm() < 1e-6);
        let m = M3::rot_x(0.3) * M3::rot_y(-1.1);
        let back = m.transpose() * (m * v3(0.2, -0.5, 0.9));
        assert!((back - v3(0.2, -0.5, 0.9)).norm() < 1e-6);
    }
}
