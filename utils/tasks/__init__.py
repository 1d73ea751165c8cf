"""Per-notebook task builders: data sets and toy problems, one module per notebook, imported
only by that notebook (and its tests). No training procedure lives here."""
