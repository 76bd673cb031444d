# explain stage: rules being written
