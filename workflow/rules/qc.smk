# qc stage: rules being written

def all_preprocessing_outputs():
    return []
