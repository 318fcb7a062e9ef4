//! Chephren: the API behind the Cheops web UI (nodes, resources, their
//! history), served beside the main API.
