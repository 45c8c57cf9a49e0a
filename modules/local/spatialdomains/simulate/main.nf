process SPATIALDOMAINS_SIMULATE {
    tag "${meta.id}"
    label 'process_low'

    input:
    val meta        // [ id: group name of the synthetic slices ]
    val n_groups    // consecutive slices are split into this many groups <id>_g1 .. <id>_g<n>

    output:
    path "simulated_input"                 , emit: dir           // slices, images, sheet, gene sets
    path "simulated_input/samplesheet.csv" , emit: samplesheet
    path "simulated_input/genesets.gmt"    , emit: gmt           // the planted marker programmes
    path "versions.yml"                    , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args     = task.ext.args ?: ''
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"

    spatialdomains simulate --threads ${task.cpus} --group ${meta.id} --out simulated_input ${args}

    # n_groups > 1: consecutive slices form groups <id>_g1 .. <id>_g<n> of (nearly) equal size
    if [ ${n_groups} -gt 1 ]; then
        sheet=simulated_input/samplesheet.csv
        rows=\$(( \$(wc -l < \$sheet) - 1 ))
        awk -F, -v OFS=, -v n=${n_groups} -v rows=\$rows \\
            'NR == 1 { for (i = 1; i <= NF; i++) if (\$i == "group") g = i; print; next }
             { \$g = \$g "_g" (int((NR - 2) * n / rows) + 1); print }' \$sheet > \$sheet.tmp
        mv \$sheet.tmp \$sheet
    fi

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p simulated_input
    touch simulated_input/slice1.h5ad simulated_input/slice2.h5ad simulated_input/genesets.gmt
    printf 'sample,group,data,platform,truth\\nslice1,${meta.id},slice1.h5ad,visium,truth\\nslice2,${meta.id},slice2.h5ad,visium,truth\\n' > simulated_input/samplesheet.csv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}
