# slices stage: rules being written
