"""The rows of docs/results.md: each an experiment file with its argument and
command-line overrides, trained into runs/results/<id> by its command, then
gathered beside the published number its config names (`config.reference`).

  python scripts/results.py                      # gather the finished runs
  python scripts/results.py --train=missing      # train the rows not yet run, then gather

MNIST rows: dynamically binarised, trained on the first 50,000 images of the
.npz (less the validation images), tested on its last 10,000. The published
protocol is 3,280 epochs of batch 20 (8.0 million steps). The one-layer VAE's
(row 2) ran in 75 minutes on 2 CPU cores. The two-layer rows' are marked for a
GPU: on 2 cores, at 1,260, 680 and (one layer) 200 steps/s measured for VAE,
IWAE k = 5 and k = 50, they would take about 1.8, 3.3 and over 11 hours. On a
CPU the table says so, and a shorter budget of the same model stands beside it.
"""

from vae_jax.results_table import Row

MNIST = ("data.path", "../shared/data/mnist/train.npz")
CIFAR = ("data.path", "../shared/data/cifar10_subset/train.npz")

ROWS = (
    Row("flax_example", "1", "Flax example: MLP 784-500-20, 30 epochs",
        "experiments/flax_vae_binarized_mnist.py:npz", (MNIST,)),
    Row("iwae1_vae_protocol", "2", "IWAE paper, one layer, VAE k=1: the published protocol",
        "experiments/iwae_burda.py:vae,k=1,npz", (MNIST,)),
    Row("iwae1_vae", "2b", "IWAE paper, one layer, VAE k=1: 300 epochs of batch 100",
        "experiments/iwae_burda.py:vae,k=1,npz,epochs=300,batch=100", (MNIST,)),
    Row("mnist_one_hour", "3", "One CPU hour: 512-512 ReLU MLP, IWAE k=5, mixture prior",
        "experiments/mnist_one_hour.py:npz", (MNIST,)),
    Row("iwae2_vae_protocol", "4", "IWAE paper, two layers, VAE k=1: the published protocol",
        "experiments/iwae_two_layer.py:vae,k=1,npz", (MNIST,), needs="gpu"),
    Row("iwae2_iwae5_protocol", "4", "IWAE paper, two layers, IWAE k=5: the published protocol",
        "experiments/iwae_two_layer.py:iwae,k=5,npz", (MNIST,), needs="gpu"),
    Row("iwae2_iwae50_protocol", "4", "IWAE paper, two layers, IWAE k=50: the published "
        "protocol", "experiments/iwae_two_layer.py:iwae,k=50,npz", (MNIST,), needs="gpu"),
    Row("iwae2_vae", "4b", "IWAE paper, two layers, VAE k=1: 300 epochs of batch 100",
        "experiments/iwae_two_layer.py:vae,k=1,npz,epochs=300,batch=100", (MNIST,)),
    Row("iwae2_iwae5", "4c", "IWAE paper, two layers, IWAE k=5: 100 epochs of batch 100",
        "experiments/iwae_two_layer.py:iwae,k=5,npz,epochs=100,batch=100", (MNIST,)),
    Row("hierarchical", "5", "Top-down hierarchy (ResNet, 4 groups): 1,500 steps",
        "experiments/hierarchical_mnist.py:npz,steps=1500",
        (MNIST, ("eval.num_importance_samples", 100))),
    Row("cifar10_subset", "6", "CIFAR-10 subset (3,000 images), top-down + mixture of "
        "logistics: 600 steps", "experiments/cifar10.py:npz",
        (CIFAR, ("train.num_steps", 600), ("objective.kl_warmup_steps", 200),
         ("eval.num_importance_samples", 100))),
)
