"""The training-slice benchmark (`fewlabel bench slices`): every method at 8, 16, 32, … labelled rows against
Naive Bayes. sampling (nested stratified slices), data (the splits and their caps), methods (one contract),
runner (units, resume), report (tables and plots), cli (the command)."""
