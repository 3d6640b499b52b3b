//! E_P, the point-cloud sequence encoder (PointNet++ per frame, temporal transformer).
