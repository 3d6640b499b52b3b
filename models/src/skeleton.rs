//! E_S, the skeleton encoder (ST-GCN). Written by the skeleton helper.
