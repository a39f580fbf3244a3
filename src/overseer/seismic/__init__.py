"""Seismic facies: SEG-Y/npy volumes, picks, a synthetic survey, attributes, GMM attribute
selection (AASPI attribute_selection) and random-forest facies classification (AASPI rfc3d)."""
