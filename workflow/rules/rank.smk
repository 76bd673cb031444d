# rank stage: rules being written
def all_explain_outputs():
    return []
