# loss.gp -- loss vs offered rate per backend (tools/bench/report.py runs it).
#   gnuplot -e "amqp='loss-amqp.dat'; file='loss-file.dat'; amqp_t='target-amqp.dat';
#               file_t='target-file.dat'; out='BENCHMARKS.png'; n_amqp=4; n_file=5" loss.gp
# Each data file holds n blocks, one per backend: a quoted title line, then
# "offered_k loss_percent target_k" rows, blocks separated by two blank lines;
# loss-* are sorted by offered rate, target-* by target (flat-out steps left out).
set terminal pngcairo size 1400,1000 font "DejaVu Sans,10" noenhanced
set output out
set multiplot layout 2,2 title "mrte-collector: statements lost vs offered rate (200-byte COM_QUERY per frame)"
set grid
set key top left box opaque
set style data linespoints
set key autotitle columnheader

# Top: loss against the rate the generator actually offered.
set xlabel "offered statements/s (thousands)"
set ylabel "lost (% of sent)"
set xrange [0:*]
set yrange [-0.5:2<*]
set title "agent -> RabbitMQ -> consumer"
if (n_amqp > 0) {
    plot for [i=0:n_amqp-1] amqp index i using 1:2 pointsize 1.2 linewidth 2
} else {
    set label 1 "no data" at graph 0.5, 0.5 center
    unset key
    plot [0:1] [0:1] 2 notitle
    unset label 1
    set key
}
set title "agent -> --sink=file -> consumer (broker out); tcpdump -w /dev/null"
if (n_file > 0) {
    plot for [i=0:n_file-1] file index i using 1:2 pointsize 1.2 linewidth 2
} else {
    set label 1 "no data" at graph 0.5, 0.5 center
    unset key
    plot [0:1] [0:1] 2 notitle
    unset label 1
    set key
}

# Bottom: what the generator managed to offer vs what it was asked for.  A
# curve that bends away from the diagonal means the 2 CPUs were saturated
# (on a veth the receive path, capture hooks included, runs in the sender's
# context, so an expensive capture slows the sender instead of dropping).
set xlabel "target statements/s (thousands)"
set ylabel "offered statements/s (thousands)"
set xrange [0:*]
set yrange [0:*]
set title "offered vs target: agent -> RabbitMQ"
if (n_amqp > 0) {
    plot for [i=0:n_amqp-1] amqp_t index i using 3:1 pointsize 1.2 linewidth 2, \
         x title "target" with lines dashtype 2 linecolor rgb "gray"
} else {
    plot x title "target" with lines dashtype 2 linecolor rgb "gray"
}
set title "offered vs target: --sink=file; tcpdump"
if (n_file > 0) {
    plot for [i=0:n_file-1] file_t index i using 3:1 pointsize 1.2 linewidth 2, \
         x title "target" with lines dashtype 2 linecolor rgb "gray"
} else {
    plot x title "target" with lines dashtype 2 linecolor rgb "gray"
}
unset multiplot
