# preprocess stage: rules being written
