"""The models, one file each under a family folder; genlab.registry imports every module here on the
first registry lookup, so a new model file registers itself."""
