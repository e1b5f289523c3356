"""The inference engine: the array batch result, preprocessing, the detector and the stages around it."""
