//! Matrix products (placeholder while the family is written).
