"""The contracts every part of datagen (and opsolve) builds on: errors, configs, the dataset
file format, random fields, the recipe and report contracts, atomic files, devices, progress
and the shared command-line behaviour. Nothing here knows a PDE or a solver."""
