"""Models: the feature matrix shared by training and scoring, the salary model and the file registry."""
