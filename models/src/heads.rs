//! Projection heads H_M, the skeleton decoder D_S and the classifier C.
