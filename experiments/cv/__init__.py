"""Cross-validation: repeated stratified K-fold runs, their report with intervals, and paired comparisons."""
