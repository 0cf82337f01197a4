mod shape;
mod weights;
