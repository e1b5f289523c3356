"""Training stage: FER-format data (real or synthetic), detection data sets, training and export."""
