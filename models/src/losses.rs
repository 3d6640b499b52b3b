//! The losses: L_CM, L_IM, L_deg, L_FUSION, CE and the related papers variants.
