//! E_R, the RGB-D encoder (two-stream (2+1)D CNN). Written by the RGB-D helper.
